"""The configuration base every role builds on: one TOML file per role, typed, strict, explained.

The kit's models are in `tpskit.edge.config` (with the hardware tables of `tpskit.firmware.config`), the
district's in `tpskit.district.config`; what both use is here: the strict `Section`, the `[broker]` table,
loading with error messages, and a small TOML writer for the files `tpskit provision` generates.

Every section is its own strict model (unknown keys are refused, a misspelt key is a loud error), every
field says what it is, and relative paths are resolved against the folder of the config file. A bad file
becomes one `ConfigError` naming the key path, the value found and what is expected.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the key, the value and the fix."""


class Section(BaseModel):
    """Base of every section: unknown keys are refused, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def relative_to(self, base: Path) -> dict[str, Any]:
        """Values other than paths that name a file relative to the config file's folder `base`, resolved
        (Path fields are resolved for every section); a section overrides it, e.g. a database URL."""
        return {}


class BrokerSection(Section):
    """`[broker]`: the district broker, as the kit and the district service both reach it."""

    host: str = Field(default="127.0.0.1", description="district broker host name or IP address")
    port: int = Field(default=8883, ge=1, le=65535, description="district broker TLS port")
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keepalive in seconds")
    session_expiry_s: int = Field(default=7 * 24 * 3600, ge=0,
                                  description="how long the broker keeps our session (queued acks) while offline")
    client_id: str | None = Field(default=None, description="MQTT client id asked for; the kit id / service id when "
                                                           "unset. A tpskit district broker replaces it with the "
                                                           "certificate's subject (one session per certificate)")
    failover: list[str] = Field(default_factory=list, max_length=8,
                                description="the district's further brokers, host:port each, for a district "
                                            "running more than one (mosquitto brokers are not clustered): a kit "
                                            "moves to the next one in order when the one it uses is unreachable; "
                                            "the district service subscribes to every one at once")

    @field_validator("failover")
    @classmethod
    def _endpoints(cls, v: list[str]) -> list[str]:
        for item in v:
            parse_endpoint(item)
        return v

    @property
    def endpoints(self) -> list[tuple[str, int]]:
        """(host, port) of every broker: `host`/`port` first, then `failover` in order, without repeats."""
        out = [(self.host, self.port)]
        for item in self.failover:
            e = parse_endpoint(item)
            if e not in out:
                out.append(e)
        return out


def parse_endpoint(text: str) -> tuple[str, int]:
    """'host:port' or '[v6 address]:port' -> (host, port); ValueError naming the form expected."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: a broker is host:port, e.g. broker2.example.org:8883")
    return host, int(port)


# ------------------------------------------------------------------------------------------ loading
M = TypeVar("M", bound=BaseModel)


def _resolve_paths(model: M, base: Path) -> M:
    """Relative paths in the file mean 'next to this config file'."""
    update: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Path) and not value.is_absolute():
            update[name] = (base / value).resolve()
        elif isinstance(value, BaseModel):
            update[name] = _resolve_paths(value, base)
    if isinstance(model, Section):
        update.update(model.relative_to(base))
    return model.model_copy(update=update) if update else model


def _describe(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    """The description of the field at `loc`, to tell the reader what is expected."""
    current: Any = model
    desc = None
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            break
        info = current.model_fields.get(str(part))
        if info is None:
            return None
        desc = info.description
        current = info.annotation
    return desc


def _format_error(path: Path, model: type[BaseModel], e: ValidationError) -> str:
    lines = [f"{path}: invalid configuration"]
    for err in e.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key; remove it or check its spelling")
            continue
        if err["type"] == "missing":
            hint = _describe(model, loc)
            lines.append(f"  {key}: missing; add it" + (f" ({hint})" if hint else ""))
            continue
        value = err.get("input")
        hint = _describe(model, loc)
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {key} = {value!r}: {msg}" + (f"; expected {hint}" if hint else ""))
    return "\n".join(lines)


def load_config(path: Path, model: type[M]) -> M:
    """Read `path` into `model`, paths resolved next to the file. ConfigError names every bad key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; give --config PATH or create it") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    except UnicodeDecodeError as e:  # found by tests/fuzz: it escaped as a traceback
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}); save the file as UTF-8") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    except RecursionError as e:  # found by probing the config fuzz target: tomllib recurses per nesting level
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deep") from e
    try:
        cfg = model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(path, model, e)) from e
    return _resolve_paths(cfg, path.parent.resolve())


def toml_dumps(data: dict[str, dict[str, Any]], header: str = "") -> str:
    """A small TOML writer for the flat two-level files we generate (tomllib only reads); values are
    strings, numbers, booleans and lists of them."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        s = str(v).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{s}"'

    out = [header.rstrip() + "\n"] if header else []
    for section, items in data.items():
        out.append(f"[{section}]")
        out.extend(f"{k} = {value(v)}" for k, v in items.items() if v is not None)
        out.append("")
    return "\n".join(out)


def nats_urls(v: list[str]) -> list[str]:
    """A list of NATS servers, each nats://host:port or tls://host:port (the district's [national] and the
    national role's [nats] both name the cluster this way)."""
    for url in v:
        if not url.startswith(("nats://", "tls://")):
            raise ValueError(f"{url!r}: a NATS server is nats://host:port")
    return v


#: A field listing NATS servers, checked by `nats_urls`.
NatsServers = Annotated[list[str], AfterValidator(nats_urls)]
