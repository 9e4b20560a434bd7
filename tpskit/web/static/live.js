// tpskit pages: live updates. An element with data-live="/events" is re-rendered from the same address with
// ?partial=1 whenever the server's event stream says "changed"; its data-version and data-updated-ms (the
// browser's clock) tell tests and bench/pages.py which version it shows and when it arrived. Controls outside
// it (filters) keep their focus and values. Without JavaScript the page is complete, only not live.
(function () {
  "use strict";
  const live = document.querySelector("[data-live]");
  const said = document.getElementById("live-status");
  if (!live || !window.EventSource) return;
  const say = (text) => { if (said) said.textContent = text; };
  say("connecting…");
  let busy = false;
  let wanted = null;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      while (wanted !== null && wanted !== live.dataset.version) {
        const version = wanted;
        const url = new URL(window.location.href);
        url.searchParams.set("partial", "1");
        const r = await fetch(url, { cache: "no-store", credentials: "same-origin" });
        if (!r.ok) break;
        const html = await r.text();
        live.innerHTML = html;
        live.dataset.version = version;
        live.dataset.updatedMs = String(Date.now());
        document.dispatchEvent(new CustomEvent("tpskit:updated", { detail: version }));
      }
    } catch (e) {
      say("update failed; retrying");
    } finally {
      busy = false;
    }
  }
  const source = new EventSource(live.dataset.live);
  source.addEventListener("hello", (e) => {
    say("live");
    const d = JSON.parse(e.data);
    if (live.dataset.version && String(d.version) !== live.dataset.version) { wanted = String(d.version); refresh(); }
  });
  source.addEventListener("changed", (e) => {
    const d = JSON.parse(e.data);
    wanted = String(d.version);
    say("live, updated " + new Date().toLocaleTimeString());
    refresh();
  });
  source.onerror = () => say("reconnecting…");
})();
