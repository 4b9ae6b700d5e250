"""A container's receive bandwidth: how many bytes it has received, its limit, and
changing the limit live (a TBF qdisc, ``tc qdisc replace … root tbf``).

An I/O edge shared by the link source (:mod:`app.telemetry.links`) and the link
actuator (:mod:`app.actuators.netlimit`). A container's network is a network namespace
with one end of a veth pair inside it; the other end, the **host side** (``veth-web``),
stays in this process's network namespace, and everything here is read and changed
from there. Traffic *to* the container leaves the host through the host-side veth, so:

* **Received bytes**: the container's received bytes are the host-side veth's
  *transmitted* bytes, ``/sys/class/net/<host-if>/statistics/tx_bytes``
  (:func:`rx_bytes_of`). Names here are from the container's side (``rx``: what it
  downloads); the interface named is always the host side.
* **Limit**: a TBF (token bucket filter) as the root qdisc of the host-side veth's
  egress caps what the container can receive (:func:`read_rate_limit`,
  :func:`set_rate_limit`). No TBF at the root (the veth default ``noqueue``, or
  ``pfifo_fast``, ``fq_codel``…) means no limit: ``inf``.

Units. Rates are **bytes per second** everywhere here. ``tc`` takes rates with a unit
(``rate 8000000bit`` is 8 Mbit/s = 1_000_000 bytes/s) and the kernel keeps a TBF's rate
as a whole number of bytes per second; ``tc -j qdisc show`` (iproute2 6.1) prints that
number as is: ``"options": {"rate": 1000000, "burst": 16384, "lat": 50000}`` for
``rate 8Mbit burst 16Kb lat 50ms`` (burst in bytes, latency in µs). So a rate is set
as ``8 × bytes/s`` bits and read back as bytes/s, unconverted.

Errors: :class:`NoSuchInterfaceError` (a :class:`ValueError`) when the interface does
not exist in this network namespace; :class:`NetLimitError` when ``tc`` fails, is
missing, times out or prints what cannot be read, or a counter cannot be read. Every
message names the interface.
"""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prescale.app.edges.command import run_tool

#: where the interfaces of this process's network namespace are listed
SYS_CLASS_NET = Path("/sys/class/net")
#: how long one ``tc`` run may take before it is given up on
DEFAULT_TIMEOUT_S = 10.0
#: TBF latency: the longest a packet may wait in the TBF queue (it sets the queue's
#: length, ``limit = rate × latency + burst``)
DEFAULT_LATENCY_S = 0.05
#: the burst is at least this much time at the rate (≥ 1 / HZ for HZ ≥ 100) …
BURST_TIME_S = 0.010
#: … and at least this many bytes (more than one full frame at any usual MTU)
MIN_BURST_BYTES = 16 * 1024
#: the lowest rate set (8 kbit/s): no use to a container below it, and the 16 KiB
#: burst would last over 16 s (below about 60 bytes/s, more than tc can express)
MIN_RATE_BYTES_PER_S = 1000
#: a burst may last at most this long at the rate: tc keeps it as a 32-bit count of
#: 64 ns ticks, which overflows at 2**32 × 64 ns ≈ 274.9 s (the burst then reads back
#: as garbage, e.g. 16384 bytes at 1 byte/s reads back as 166)
MAX_BURST_TIME_S = 250.0
#: root qdiscs that are no shaping of anyone's: the kernel's defaults (and a TBF,
#: which is ours to change). Another root qdisc (htb, netem, cake, …) is another
#: tool's traffic control; it is never replaced.
REPLACEABLE_ROOT_QDISCS = frozenset({"noqueue", "pfifo_fast", "fq_codel", "fq", "mq", "pfifo",
                                     "bfifo", "sfq", "tbf"})
#: the longest interface name Linux takes (IFNAMSIZ − 1)
MAX_INTERFACE_NAME_CHARS = 15
#: what a frame adds to the MTU on a veth: its Ethernet header (counted by TBF)
ETHERNET_HEADER_BYTES = 14
#: the most bytes a TBF can queue (``limit = rate × latency + burst``) or hold as a
#: burst: tc keeps both in 32 bits
MAX_TBF_BYTES = 2**32 - 1


class NetLimitError(RuntimeError):
    """A rate limit or counter could not be read or set (``tc`` failed, is missing, did
    not finish, printed what cannot be read; a counter file unreadable); the message
    names the interface and what ``tc`` said."""


class NoSuchInterfaceError(ValueError):
    """An interface that does not exist in this network namespace; the message names
    it."""


# --------------------------------------------------------------------------- interfaces


def interface_problem(dev: str) -> str | None:
    """Why ``dev`` cannot be the name of a network interface, or None when it can.

    Linux's own rule (``dev_valid_name``): 1 to 15 characters, not ``.`` or ``..``, no
    ``/``, ``:`` or whitespace. Examples: ``"veth-web"`` → None; ``"../eth0"`` →
    ``"contains '/'"``; ``"veth-web-frontend"`` → ``"is longer than 15 characters"``.
    """
    if not isinstance(dev, str) or not dev:
        return "is not a non-empty string"
    if len(dev) > MAX_INTERFACE_NAME_CHARS:
        return f"is longer than {MAX_INTERFACE_NAME_CHARS} characters"
    if dev in (".", ".."):
        return "is . or .."
    for bad in ("/", ":"):
        if bad in dev:
            return f"contains {bad!r}"
    if any(ch.isspace() for ch in dev):
        return "contains whitespace"
    return None


def check_interface_name(dev: str) -> str:
    """``dev`` when it can name an interface; else :class:`ValueError`, e.g.
    ``"'../eth0' is not a network interface name: contains '/'"``."""
    problem = interface_problem(dev)
    if problem is not None:
        raise ValueError(f"{dev!r} is not a network interface name: {problem}")
    return dev


def interface_exists(dev: str) -> bool:
    """Whether ``dev`` is an interface of this process's network namespace (it is
    listed in ``/sys/class/net``). A name no interface can have is False."""
    return interface_problem(dev) is None and (SYS_CLASS_NET / dev).exists()


def check_interface(dev: str) -> str:
    """``dev`` when it exists here; else :class:`NoSuchInterfaceError`, e.g.
    ``"no network interface veth-web here (/sys/class/net/veth-web does not exist)"``
    (a bad name: :class:`ValueError` from :func:`check_interface_name`)."""
    check_interface_name(dev)
    if not (SYS_CLASS_NET / dev).exists():
        raise NoSuchInterfaceError(f"no network interface {dev} here "
                                   f"({SYS_CLASS_NET / dev} does not exist)")
    return dev


def rx_bytes_of(dev: str) -> float:
    """The bytes the container behind host-side veth ``dev`` has received: the host
    side's **transmitted** bytes, ``/sys/class/net/<dev>/statistics/tx_bytes``.

    What leaves the host side arrives in the container, so one counter serves; it
    counts only what got past the TBF (what it drops is never sent), headers included:
    Ethernet, IP and TCP headers once per packet handed to the veth, and with
    segmentation offload one packet carries several segments' payload, so the counter
    runs 1–5 % above the payload (measured: 2_126_064 for 2_095_648 bytes of TCP payload,
    +1.45 %). The TBF, by contrast, charges every segment its headers: a TCP transfer
    gets about 1448 / 1514 ≈ 95.6 % of the TBF's rate as payload. Worked example:
    ``tx_bytes`` reads ``5230912`` → 5_230_912.0. A
    counter of 64 bits that starts at 0 when the veth is created (a recreated
    interface starts over). :class:`NoSuchInterfaceError` when ``dev`` does not exist,
    :class:`NetLimitError` when the counter cannot be read.
    """
    return float(_sys_int(dev, "statistics/tx_bytes", "a byte count"))


def mtu_of(dev: str) -> int:
    """The MTU of ``dev`` (``/sys/class/net/<dev>/mtu``), bytes: 1500 for a veth by
    default. :class:`NoSuchInterfaceError` when ``dev`` does not exist,
    :class:`NetLimitError` when it cannot be read."""
    return _sys_int(dev, "mtu", "an MTU")


def check_links(links: Mapping[str, str]) -> dict[str, str]:
    """``sources.links`` checked: container name (non-empty) → a valid interface name.
    ``ValueError`` naming the container otherwise, e.g. "links: the interface of 'web'
    must be a network interface name, got '../eth0': it contains '/'"."""
    checked: dict[str, str] = {}
    for name, dev in dict(links).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"links: a container name must be a non-empty string, "
                             f"got {name!r}")
        problem = interface_problem(dev)
        if problem is not None:
            raise ValueError(f"links: the interface of {name!r} must be a network "
                             f"interface name, got {dev!r}: it {problem}")
        checked[name] = dev
    return checked


def _sys_int(dev: str, name: str, what: str) -> int:
    """The whole number in ``/sys/class/net/<dev>/<name>``: :class:`NoSuchInterfaceError`
    when ``dev`` does not exist, :class:`NetLimitError` when it cannot be read or does not
    hold ``what``."""
    check_interface_name(dev)
    path = SYS_CLASS_NET / dev / name
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise NoSuchInterfaceError(f"no network interface {dev} here "
                                   f"({path} does not exist)") from None
    except OSError as exc:
        raise NetLimitError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not text.isdigit():
        raise NetLimitError(f"{path} does not hold {what}: {text!r}")
    return int(text)


# --------------------------------------------------------------------------- qdiscs


@dataclass(frozen=True)
class Qdisc:
    """One qdisc of ``tc -j qdisc show``: its interface, kind (``tbf``, ``noqueue``…),
    handle (``8001:``), whether it is the root of the interface's egress, and its
    options as ``tc`` printed them."""

    dev: str
    kind: str
    handle: str
    root: bool
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Tbf:
    """A TBF's settings as read back: rate (bytes/s), burst (bytes), latency (s)."""

    rate_bytes_per_s: float
    burst_bytes: float
    latency_s: float


_RATE_TEXT = re.compile(r"^([0-9.]+)([KMGT]?i?)(bit|bps)$", re.IGNORECASE)
_PREFIX = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12,
           "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def rate_value_bytes_per_s(value: Any) -> float:
    """A TBF ``rate`` as ``tc -j`` printed it, in bytes/s.

    iproute2 6.1 prints a number of **bytes** per second (``1000000`` for
    ``8Mbit``), returned as is. A text with a unit (as ``tc`` prints without ``-j``,
    and as some other versions may print in JSON) is converted: ``"8Mbit"`` → 8 × 10⁶
    bits/s ÷ 8 = 1_000_000.0; ``"1Mibps"`` → 1_048_576.0 (``bps`` is bytes/s in tc).
    Anything else: :class:`ValueError`.
    """
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        m = _RATE_TEXT.match(value.strip())
        if m:
            number = float(m.group(1)) * _PREFIX[m.group(2).lower()]
            return number / 8 if m.group(3).lower() == "bit" else number
    raise ValueError(f"cannot read a rate from {value!r}")


def parse_qdiscs(text: str, dev: str | None = None) -> list[Qdisc]:
    """The qdiscs in the JSON that ``tc -j qdisc show [dev DEV]`` prints.

    With ``dev DEV`` tc leaves ``"dev"`` out of each entry; ``dev`` fills it in.
    Example::

        [{"kind":"tbf","handle":"8001:","root":true,"refcnt":3,
          "options":{"rate":1000000,"burst":16384,"lat":50000}}]

    with ``dev="veth-web"`` → ``[Qdisc("veth-web", "tbf", "8001:", True, {...})]``.
    :class:`ValueError` when it is not such a list.
    """
    data = json.loads(text) if text.strip() else []
    if not isinstance(data, list):
        raise ValueError(f"expected a JSON list of qdiscs, got {type(data).__name__}")
    out: list[Qdisc] = []
    for item in data:
        if not isinstance(item, dict) or "kind" not in item:
            raise ValueError(f"expected a qdisc (an object with a kind), got {item!r}")
        options = item.get("options") or {}
        out.append(Qdisc(str(item.get("dev", dev or "")), str(item["kind"]),
                         str(item.get("handle", "")), item.get("root") is True,
                         options if isinstance(options, dict) else {}))
    return out


def root_qdisc(qdiscs: list[Qdisc], dev: str) -> Qdisc | None:
    """The root qdisc of ``dev``'s egress among ``qdiscs``, or None (an ``ingress``
    qdisc is not one: its parent is ``ffff:fff1``, not root)."""
    for q in qdiscs:
        if q.dev == dev and q.root:
            return q
    return None


def tbf_of(qdisc: Qdisc | None) -> Tbf | None:
    """The TBF settings of ``qdisc``, or None when it is not a TBF.

    Worked example: options ``{"rate": 1000000, "burst": 16384, "lat": 50000}`` →
    ``Tbf(1_000_000.0, 16384.0, 0.05)`` (``lat`` is in µs: 50_000 µs = 0.05 s).
    :class:`ValueError` when a TBF has no readable rate.
    """
    if qdisc is None or qdisc.kind != "tbf":
        return None
    options = qdisc.options
    if "rate" not in options:
        raise ValueError(f"the TBF on {qdisc.dev} has no rate in {dict(options)!r}")
    rate = rate_value_bytes_per_s(options["rate"])
    burst = options.get("burst", math.nan)
    lat = options.get("lat", math.nan)
    return Tbf(rate, float(burst) if isinstance(burst, numbers.Real) else math.nan,
               float(lat) / 1e6 if isinstance(lat, numbers.Real) else math.nan)


def rate_limit_of(qdisc: Qdisc | None) -> float:
    """The receive limit a root qdisc sets, bytes/s: a TBF's rate, else ``inf``.
    Example: a TBF of rate 1_000_000 → 1_000_000.0; ``noqueue`` or None → inf."""
    tbf = tbf_of(qdisc)
    return math.inf if tbf is None else tbf.rate_bytes_per_s


def _run_tc(args: list[str], dev: str, timeout_s: float) -> str:
    """Run ``tc args`` (:func:`~app.edges.command.run_tool`); its stdout, or
    :class:`NetLimitError` naming the command, the interface and what tc said."""
    return run_tool(["tc", *args], timeout_s=timeout_s, error=NetLimitError,
                    missing=f"cannot run tc for {dev}: the tc command is not installed "
                    "(iproute2)")


def read_qdiscs(dev: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[Qdisc]:
    """The qdiscs of ``dev`` (``tc -j qdisc show dev DEV``), or of every interface here
    when ``dev`` is None (one ``tc`` run for all: what a source polling many links
    uses). :class:`NoSuchInterfaceError` when ``dev`` does not exist,
    :class:`NetLimitError` when tc fails or prints what is not qdiscs."""
    args = ["-j", "qdisc", "show"]
    if dev is not None:
        check_interface(dev)
        args += ["dev", dev]
    where = dev if dev is not None else "the interfaces"
    out = _run_tc(args, where, timeout_s)
    try:
        return parse_qdiscs(out, dev)
    except ValueError as exc:
        raise NetLimitError(f"tc {' '.join(args)} printed what cannot be read for "
                            f"{where}: {exc}") from None


def read_tbf(dev: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Tbf | None:
    """The TBF at the root of ``dev``'s egress (read back), or None when the root
    qdisc is not a TBF. Errors as :func:`read_qdiscs`."""
    root = root_qdisc(read_qdiscs(dev, timeout_s), dev)
    try:
        return tbf_of(root)
    except ValueError as exc:
        raise NetLimitError(f"tc -j qdisc show dev {dev}: {exc}") from None


def read_rate_limit(dev: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
    """The receive limit of the container behind host-side veth ``dev``, bytes/s: the
    rate of the TBF at the root of ``dev``'s egress, ``math.inf`` when the root qdisc is
    not a TBF (no limit).

    Worked example: ``tc -j qdisc show dev veth-web`` prints
    ``[{"kind":"tbf",…,"options":{"rate":1000000,"burst":16384,"lat":50000}}]`` →
    1_000_000.0 (bytes/s, as tc prints it: 8 Mbit/s); ``[{"kind":"noqueue",…}]`` → inf.
    :class:`NoSuchInterfaceError` when ``dev`` does not exist, :class:`NetLimitError`
    when tc fails.
    """
    tbf = read_tbf(dev, timeout_s)
    return math.inf if tbf is None else tbf.rate_bytes_per_s


def read_rate_limits(timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, float]:
    """Every interface's receive limit (as :func:`read_rate_limit`), from one
    ``tc -j qdisc show``: ``{"eth0": inf, "veth-web": 1000000.0, …}``. An interface
    tc does not list is not in the answer. :class:`NetLimitError` when tc fails."""
    qdiscs = read_qdiscs(None, timeout_s)
    out: dict[str, float] = {}
    for q in qdiscs:
        if q.root and q.dev:
            try:
                out[q.dev] = rate_limit_of(q)
            except ValueError as exc:
                raise NetLimitError(f"tc -j qdisc show: {exc}") from None
    return out


# --------------------------------------------------------------------------- setting


def kept_rate_bytes_per_s(rate_bytes_per_s: float) -> int:
    """The rate the kernel keeps for ``rate_bytes_per_s``: a whole number of bytes/s.

    It is rounded to the nearest whole byte/s here and set as exactly 8 × that many
    bits, so it reads back unchanged. Worked example: 1_000_000.4 → 1_000_000 →
    ``rate 8000000bit`` → reads back 1_000_000. (tc itself would truncate: ``rate
    1000004bit`` is 125_000.5 bytes/s and reads back 125_000.)
    """
    return int(round(rate_bytes_per_s))


def burst_for(rate_bytes_per_s: float, frame_bytes: int = 1500 + ETHERNET_HEADER_BYTES
              ) -> int:
    """The TBF burst (bucket size, bytes) used for a rate: ``max(⌈rate × 10 ms⌉,
    16 KiB, frame_bytes)``.

    The kernel adds tokens once per timer tick at worst, so a bucket smaller than
    ``rate / HZ`` cannot reach the rate; 10 ms of the rate covers HZ ≥ 100. The bucket
    must also hold one whole frame (MTU + Ethernet header: a larger packet would never
    pass): 16 KiB is more than that at the usual MTUs (1500, 9000), and ``frame_bytes``
    covers any other. Worked examples (MTU 1500, frame 1514): 1_000_000 bytes/s →
    max(10_000, 16_384, 1514) = 16_384; 4_000_000 → max(40_000, 16_384, 1514) = 40_000;
    125_000_000 (1 Gbit/s) → 1_250_000; 1_000_000 on an MTU of 65_536 → 65_550.
    """
    return max(int(math.ceil(rate_bytes_per_s * BURST_TIME_S)), MIN_BURST_BYTES,
               int(frame_bytes))


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_rate(dev: str, rate_bytes_per_s: float) -> None:
    """``rate_bytes_per_s`` is a finite number ≥ :data:`MIN_RATE_BYTES_PER_S`; else
    :class:`ValueError` naming the interface and the value, e.g. ``"rate limit of
    veth-web must be a finite number of bytes/s > 0, got nan"``."""
    if not _is_number(rate_bytes_per_s) or not math.isfinite(rate_bytes_per_s) \
            or rate_bytes_per_s <= 0:
        raise ValueError(f"rate limit of {dev} must be a finite number of bytes/s > 0, "
                         f"got {rate_bytes_per_s!r}")
    if rate_bytes_per_s < MIN_RATE_BYTES_PER_S:
        raise ValueError(f"rate limit of {dev} must be at least {MIN_RATE_BYTES_PER_S} "
                         f"bytes/s (8 kbit/s), got {rate_bytes_per_s!r}: at a lower rate the "
                         "16 KiB burst would last over 16 s")


def set_rate_limit(dev: str, rate_bytes_per_s: float, *, burst_bytes: int | None = None,
                   latency_s: float = DEFAULT_LATENCY_S,
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
    """Limit what the container behind host-side veth ``dev`` can receive to
    ``rate_bytes_per_s``; return the rate read back (bytes/s).

    Runs ``tc qdisc replace dev DEV root tbf rate <bits>bit burst <bytes> latency
    <ms>ms`` (list arguments, ``timeout_s``): the rate rounded to whole bytes/s
    (:func:`kept_rate_bytes_per_s`) × 8 bits, the burst :func:`burst_for` the rate and
    ``dev``'s MTU unless ``burst_bytes`` is given, then reads the TBF back. ``replace``
    swaps the qdisc in place: the link stays up, open connections go on at the new
    rate. Worked example (MTU 1500): ``set_rate_limit("veth-web", 1_000_000)`` → ``tc
    qdisc replace dev veth-web root tbf rate 8000000bit burst 16384 latency 50ms`` →
    returns 1_000_000.0; ``set_rate_limit("veth-web", 4_000_000)`` → ``rate
    32000000bit burst 40000 latency 50ms``. The TBF then queues at most ``rate ×
    latency + burst`` bytes (1_000_000 × 0.05 + 16_384 = 66_384) and drops the rest.

    Checked before anything runs (:class:`ValueError` naming the interface, nothing
    changed): the rate is finite and ≥ :data:`MIN_RATE_BYTES_PER_S`; ``latency_s`` is
    finite and > 0; the interface exists (:class:`NoSuchInterfaceError`);
    ``burst_bytes``, when given, is a whole number of bytes holding a full frame (MTU +
    14) and 1 ms of the rate (``rate / HZ`` at HZ = 1000), and lasting at most
    :data:`MAX_BURST_TIME_S` at the rate; ``rate × latency + burst`` fits in
    :data:`MAX_TBF_BYTES`; the root qdisc is a TBF or a kernel default
    (:data:`REPLACEABLE_ROOT_QDISCS`): another tool's shaping (htb, netem…) is never
    replaced. ``tc`` failing (e.g. a latency below the 1 µs it can express), missing or
    not finishing, or a rate or burst read back other than set, raises
    :class:`NetLimitError` naming the interface and what tc said.
    """
    check_interface_name(dev)
    check_rate(dev, rate_bytes_per_s)
    if not _is_number(latency_s) or not math.isfinite(latency_s) or latency_s <= 0:
        raise ValueError(f"latency of the TBF on {dev} must be a finite number of seconds "
                         f"> 0, got {latency_s!r}")
    rate = kept_rate_bytes_per_s(rate_bytes_per_s)
    check_interface(dev)
    frame_bytes = mtu_of(dev) + ETHERNET_HEADER_BYTES
    if burst_bytes is None:
        burst = burst_for(rate, frame_bytes)
    else:
        if not _is_number(burst_bytes) or not math.isfinite(burst_bytes) \
                or burst_bytes != int(burst_bytes) or burst_bytes < 1:
            raise ValueError(f"burst of the TBF on {dev} must be a whole number of bytes "
                             f"≥ 1, got {burst_bytes!r}")
        burst = int(burst_bytes)
        least = max(int(math.ceil(rate * 0.001)), frame_bytes)
        if burst < least:
            raise ValueError(f"burst of the TBF on {dev} must be at least {least} bytes (a "
                             f"full frame of {frame_bytes} bytes, and 1 ms at {rate} "
                             f"bytes/s), got {burst}")
        if burst / rate > MAX_BURST_TIME_S:
            raise ValueError(f"burst of the TBF on {dev}: {burst} bytes at {rate} bytes/s "
                             f"last {burst / rate:.0f} s, more than the {MAX_BURST_TIME_S:g} s "
                             "tc can express")
    queue_bytes = rate * latency_s + burst
    if queue_bytes > MAX_TBF_BYTES:
        raise ValueError(f"a TBF on {dev} of {rate} bytes/s, burst {burst} bytes and latency "
                         f"{latency_s:g} s would queue {queue_bytes:.0f} bytes, more than "
                         f"the {MAX_TBF_BYTES} tc can hold")
    root = root_qdisc(read_qdiscs(dev, timeout_s), dev)
    if root is not None and root.kind not in REPLACEABLE_ROOT_QDISCS:
        raise ValueError(f"{dev} has a root qdisc {root.kind} ({root.handle}) that is not a "
                         "TBF: prescale does not replace another tool's traffic control")
    _run_tc(["qdisc", "replace", "dev", dev, "root", "tbf", "rate", f"{8 * rate}bit",
             "burst", str(burst), "latency", f"{latency_s * 1e3:g}ms"], dev, timeout_s)
    tbf = read_tbf(dev, timeout_s)
    if tbf is None:
        raise NetLimitError(f"set a TBF on {dev} but its root qdisc is not a TBF when "
                            "read back")
    if tbf.rate_bytes_per_s != rate:
        raise NetLimitError(f"set a TBF of {rate} bytes/s on {dev} but it reads back "
                            f"{tbf.rate_bytes_per_s:.0f} bytes/s")
    # tc keeps the burst as a time at the rate, in whole µs: up to 1 µs of the rate off
    slack_bytes = rate * 2e-6 + 0.01 * burst + 2
    if not abs(tbf.burst_bytes - burst) <= slack_bytes:
        raise NetLimitError(f"set a TBF with a burst of {burst} bytes on {dev} but it reads "
                            f"back {tbf.burst_bytes:.0f} bytes")
    return tbf.rate_bytes_per_s


__all__ = [
    "BURST_TIME_S",
    "check_links",
    "DEFAULT_LATENCY_S",
    "DEFAULT_TIMEOUT_S",
    "ETHERNET_HEADER_BYTES",
    "MAX_BURST_TIME_S",
    "MAX_INTERFACE_NAME_CHARS",
    "MAX_TBF_BYTES",
    "MIN_BURST_BYTES",
    "MIN_RATE_BYTES_PER_S",
    "REPLACEABLE_ROOT_QDISCS",
    "SYS_CLASS_NET",
    "NetLimitError",
    "NoSuchInterfaceError",
    "Qdisc",
    "Tbf",
    "burst_for",
    "check_interface",
    "check_interface_name",
    "check_rate",
    "interface_exists",
    "interface_problem",
    "kept_rate_bytes_per_s",
    "mtu_of",
    "parse_qdiscs",
    "rate_limit_of",
    "rate_value_bytes_per_s",
    "read_qdiscs",
    "read_rate_limit",
    "read_rate_limits",
    "read_tbf",
    "root_qdisc",
    "rx_bytes_of",
    "set_rate_limit",
]
