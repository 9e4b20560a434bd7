// The kit's review page. It holds no state of its own: it draws the daemon's /view, asks for it again on every
// event from /events, and posts the officer's actions as commands. The draft value being typed is the only
// thing kept here, and the daemon evaluates it (`check`) without storing it until Save (`correct`).
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  let current = null;      // the last /view drawn
  let editing = null;      // field name open in the editor
  let draft = "";
  let checkSeq = 0;

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = String(text);
    return e;
  }
  function both(idText, enText) {   // Bahasa Indonesia first, English after
    const f = document.createDocumentFragment();
    f.append(idText + " ");
    const en = el("span", "en", "/ " + enText);
    en.lang = "en";
    f.append(en);
    return f;
  }
  const fmtTime = (t) => { if (!t) return ""; const d = new Date(typeof t === "number" ? t * 1000 : t);
    return d.toLocaleString("id-ID", { hour: "2-digit", minute: "2-digit", second: "2-digit", day: "2-digit", month: "2-digit" }); };
  const show = (node, on) => { node.hidden = !on; };

  async function post(body) {
    const r = await fetch("/command", { method: "POST", headers: { "Content-Type": "application/json" },
                                        body: JSON.stringify(body), cache: "no-store" });
    return r.json();
  }

  // ------------------------------------------------------------------ drawing the view
  function render(v) {
    current = v;
    document.body.dataset.state = v.state;
    const band = $("band");
    band.className = "band c-" + v.colour;
    $("state-id").textContent = v.words.id;
    $("state-en").textContent = v.words.en;
    $("kit-id").textContent = "Kit " + v.kit + " · TPS " + v.tps;
    for (const c of ["green", "amber", "red"]) {
      const b = v.lights ? v.lights[c] : "off";
      $("light-" + c).className = "light l-" + c + " b-" + b;
    }
    $("msg-id").textContent = v.officer ? v.officer.id : "";
    $("msg-en").textContent = v.officer ? v.officer.en : "";
    $("message").className = "message lv-" + (v.officer ? v.officer.level : "info");

    const refused = v.picture && v.picture.kind === "refused";
    show($("refusal"), !!refused);
    if (refused && $("refusal-img").getAttribute("src") !== v.picture.url) $("refusal-img").src = v.picture.url;

    show($("reading"), !!v.reading);
    if (v.reading) renderReading(v.reading, v.picture && v.picture.kind === "sheet" ? v.picture : null);
    renderDelivery(v);
    if (editing && !(v.reading && v.reading.fields.some((f) => f.name === editing))) closeEditor();
    else if (editing) renderEditorChecks(null);
    document.body.dataset.version = String(v.version);
    requestAnimationFrame(() => { document.body.dataset.paintedMs = String(Date.now()); });
  }

  function renderReading(r, pic) {
    $("form-title").textContent = r.title;
    $("review-note").textContent = r.review.length
      ? r.review.length + " kolom perlu diperiksa (kuning) / " + r.review.length + " fields to review (yellow): tap to correct"
      : "Sentuh kolom untuk mengoreksi / Tap a field to correct it";
    // The sheet, each field's value drawn on its boxes.
    const s = $("sheet");
    s.replaceChildren();
    show(s, !!pic);
    if (pic) {
      s.setAttribute("viewBox", "0 0 " + pic.width + " " + pic.height);
      s.append(svg("image", { href: pic.url, x: 0, y: 0, width: pic.width, height: pic.height }));
      for (const f of r.fields) {
        if (!f.box) continue;
        const [x, y, w, h] = f.box;
        const kind = f.review ? "review" : (f.status === "corrected" ? "corrected" : "ok");
        const g = svg("g", { class: "mark m-" + kind, "data-field": f.name });
        g.append(svg("rect", { class: "box", x: x - 3, y: y - 3, width: w + 6, height: h + 6, rx: 3 }));
        const text = f.value === null ? "?" : String(f.value);
        const tw = 26 * text.length + 12;
        // Left of the boxes, over the printed label (listed below anyway): never over another field's boxes.
        g.append(svg("rect", { class: "tag", x: x - tw - 8, y: y + h / 2 - 22, width: tw, height: 44, rx: 4 }));
        g.append(svg("text", { class: "val", x: x - tw - 2, y: y + h / 2 + 14 }, text));
        g.addEventListener("click", () => openEditor(f.name));
        s.append(g);
      }
    }
    // The fields by their printed labels.
    const ul = $("fields");
    ul.replaceChildren();
    let section = null;
    for (const f of r.fields) {
      if (f.section !== section) { section = f.section; ul.append(el("li", "section", "Bagian " + section)); }
      const li = el("li");
      const b = el("button", "field " + (f.review ? "is-review" : (f.status === "corrected" ? "is-corrected" : "is-ok")));
      b.type = "button";
      b.dataset.field = f.name;
      b.append(el("span", "f-label", f.label));
      b.append(el("span", "f-value", f.value === null ? "?" : f.value));
      const st = f.review ? "periksa / check" : (f.status === "corrected" ? "dikoreksi / corrected" : (f.status === "resolved_by_checks" ? "oleh pemeriksaan / by checks" : "ok"));
      b.append(el("span", "f-status", st));
      if (f.status === "corrected") b.append(el("span", "f-ocr", "OCR: " + (f.ocr_value === null ? "?" : f.ocr_value)));
      b.setAttribute("aria-label", f.label + ": " + (f.value === null ? "?" : f.value) + ", " + st +
                     (f.status === "corrected" ? ", OCR " + (f.ocr_value === null ? "?" : f.ocr_value) : ""));
      b.addEventListener("click", () => openEditor(f.name));
      li.append(b);
      ul.append(li);
    }
    drawChecks($("checks"), r.checks, r.fields, null);
    const failing = r.failing.length > 0;
    show($("slip-box"), failing);
    $("slip").checked = !!r.officer_slip;
    const pending = current && (current.daemon_state === "confirm" || current.daemon_state === "review");
    $("confirm").disabled = !(pending && r.confirmable);
    $("confirm-why").textContent = !pending ? "" : (r.confirmable
      ? (r.review.length ? "Kolom kuning belum dikoreksi; dikirim sebagai 'tinjau' / Yellow fields not corrected; sent as 'review'" : "")
      : "Ada pemeriksaan yang gagal: koreksi nilainya, atau tandai hitungan lembar / A check fails: correct the value, or mark the sheet's arithmetic");
  }

  function drawChecks(ul, checks, fields, only) {
    ul.replaceChildren();
    const byName = {};
    for (const f of fields) byName[f.name] = f;
    for (const c of checks) {
      if (only && !c.sum.concat(c.rhs).includes(only.name)) continue;
      const val = (n) => { if (only && n === only.name) return only.value; const f = byName[n]; return f && f.value !== null ? f.value : "?"; };
      const li = el("li", "check " + (c.passed ? "pass" : "fail"));
      li.dataset.check = c.id;
      li.append(el("span", "c-mark", c.passed ? "✓ lolos / passes" : "✗ gagal / fails"));
      li.append(el("span", "c-sum", c.sum.map(val).join(" + ") + (c.relation === "equals" ? " = " : " ≤ ") + c.rhs.map(val).join(" + ")));
      li.append(el("span", "c-text", c.text));
      ul.append(li);
    }
  }

  function renderDelivery(v) {
    const rc = $("receipt");
    rc.replaceChildren();
    if (v.receipt) {
      const r = v.receipt;
      const ok = r.status === "accepted" || r.status === "duplicate";
      rc.className = "receipt " + (ok ? "r-ok" : "r-bad");
      rc.append(el("strong", null, ok ? "Diterima kabupaten / Received by the district" : "Ditolak kabupaten / Refused by the district"));
      rc.append(el("span", null, " · TPS " + (r.tps || "?") + " · urutan / sequence " + r.seq + " · " + fmtTime(r.received_at) +
                                 (r.district ? " · " + r.district : "") + (r.reason ? " · " + r.reason : "")));
    } else {
      rc.className = "receipt";
      rc.append(both("Belum ada tanda terima.", "No receipt yet."));
    }
    const ul = $("outbox");
    ul.replaceChildren();
    if (!v.outbox) return;
    const c = v.outbox.counts;
    ul.append(el("li", "counts", "Antre / queued " + c.queued + " · terkirim / sent " + c.sent + " · diakui / acknowledged " +
                                 c.acknowledged + (c.rejected ? " · ditolak / refused " + c.rejected : "")));
    const words = { queued: "antre / queued", sent: "terkirim / sent", acknowledged: "diakui / acknowledged", rejected: "ditolak / refused" };
    for (const row of v.outbox.rows) {
      const li = el("li", "ob ob-" + row.state, "#" + row.seq + " · " + (words[row.state] || row.state) + " · " + fmtTime(row.acked_at || row.sent_at || row.created_at));
      li.dataset.submission = row.submission_id;
      ul.append(li);
    }
  }

  // ------------------------------------------------------------------ the editor and its number pad
  function field(name) { return current && current.reading ? current.reading.fields.find((f) => f.name === name) : null; }

  function openEditor(name) {
    const f = field(name);
    if (!f) return;
    editing = name;
    draft = "";
    $("ed-label").textContent = f.label;
    const ocr = f.status === "corrected" ? f.ocr_value : f.value;
    $("ed-ocr").textContent = ocr === null ? "?" : ocr;
    $("ed-error").textContent = "";
    $("draft").textContent = "";
    renderEditorChecks(null);
    show($("editor"), true);
    $("save").disabled = true;
    $("pad").querySelector("button").focus();
  }

  function closeEditor() {
    editing = null;
    draft = "";
    show($("editor"), false);
  }

  function renderEditorChecks(checks) {
    const r = current && current.reading;
    if (!r || !editing) return;
    const shown = checks || r.checks;
    drawChecks($("ed-checks"), shown, r.fields, draft === "" ? null : { name: editing, value: Number(draft) });
  }

  async function typed() {
    $("draft").textContent = draft;
    $("save").disabled = draft === "";
    $("ed-error").textContent = "";
    if (draft === "") { renderEditorChecks(null); return; }
    const seq = ++checkSeq;
    const got = await post({ command: "check", field: editing, value: draft });
    if (seq !== checkSeq || !editing) return;   // a newer key press is on its way
    if (got.error) { $("ed-error").textContent = got.error; $("save").disabled = true; return; }
    renderEditorChecks(got.checks.map((c) => Object.assign({}, current.reading.checks.find((x) => x.id === c.id), c)));
    document.getElementById("ed-checks").dataset.draft = draft;
  }

  function key(k) {
    if (!editing) return;
    if (k === "back") draft = draft.slice(0, -1);
    else if (k === "clear") draft = "";
    else if (draft.length < 6) draft = (draft === "0" ? "" : draft) + k;
    typed();
  }

  async function save() {
    if (!editing || draft === "") return;
    const got = await post({ command: "correct", field: editing, value: draft });
    if (got.error) { $("ed-error").textContent = got.error; return; }
    closeEditor();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("pad").addEventListener("click", (e) => {
      const b = e.target.closest("button[data-key]");
      if (b) key(b.dataset.key);
    });
    $("save").addEventListener("click", save);
    $("cancel").addEventListener("click", closeEditor);
    document.addEventListener("keydown", (e) => {
      if (!editing) return;
      if (/^[0-9]$/.test(e.key)) { key(e.key); e.preventDefault(); }
      else if (e.key === "Backspace") { key("back"); e.preventDefault(); }
      else if (e.key === "Enter" && e.target.closest && !e.target.closest("button")) { save(); }
      else if (e.key === "Escape") closeEditor();
    });
    $("slip").addEventListener("change", async (e) => {
      const got = await post({ command: "slip", on: e.target.checked });
      if (got.error) e.target.checked = !e.target.checked;
    });
    $("confirm").addEventListener("click", async () => {
      $("confirm").disabled = true;
      const got = await post({ command: "confirm" });
      if (got.error) $("confirm-why").textContent = got.error;
    });
    connect();
  });

  // ------------------------------------------------------------------ live: the daemon says when to look again
  let wanted = -1, busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      while (!current || wanted > current.version) {
        const r = await fetch("/view", { cache: "no-store" });
        if (!r.ok) break;
        render(await r.json());
      }
    } catch (e) {
      $("msg-en").textContent = "Lost contact with the kit; retrying…";
    } finally {
      busy = false;
    }
  }
  function connect() {
    const src = new EventSource("/events");
    const on = (e) => { wanted = Math.max(wanted, JSON.parse(e.data).version); if (!current) wanted = Math.max(wanted, 0); refresh(); };
    src.addEventListener("hello", (e) => { current = null; on(e); });
    src.addEventListener("changed", on);
  }
})();
