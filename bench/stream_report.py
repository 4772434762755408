"""The Markdown table of ``stream_bench.py`` (one row per scenario and target)."""

from __future__ import annotations

from typing import Any

import protocol


def _f(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ms(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


def _primary(scenario: str, row: dict[str, Any]) -> tuple[float | None, bool]:
    """(figure, higher_is_better) compared with Tiled."""
    if scenario.startswith(("G2", "G5 256KiB x32 flat")):
        return row.get("delivered_fps"), True
    if scenario.startswith("G13"):
        return row.get("writer_fps"), True
    if scenario.startswith(("G4", "G5 256KiB x32 @")):
        return row.get("p99_ms"), False
    if scenario.startswith("G7"):
        return row.get("msgs_per_s"), True
    if scenario.startswith("G8"):
        return row.get("writer_fps"), True
    return None, True


def _result(scenario: str, row: dict[str, Any], target: dict[str, Any]) -> tuple[str, str]:
    """(result text, CPU-normalized text)."""
    rows = target["rows"]
    if scenario.startswith(("G2", "G13")):
        text = (
            f"{_f(row['delivered_fps'])} frames/s, {_f(row['delivered_MBps'])} MB/s "
            f"(writer {_f(row['writer_fps'])}/s; p99 {_ms(row['p99_ms'])} ms)"
        )
        return text, f"{_f(row['delivered_MB_per_cpu_s'])} MB/CPU-s"
    if scenario.startswith("G4"):
        text = (
            f"p50 {_ms(row['p50_ms'])} / p99 {_ms(row['p99_ms'])} / p99.9 "
            f"{_ms(row['p999_ms'])} / max {_ms(row['max_ms'])} ms ({row['samples']} frames)"
        )
        return text, f"{_f(row['delivered_frames_per_cpu_s'])} frames/CPU-s"
    if scenario.startswith("G5 256KiB x32 flat"):
        one = rows.get("G2 256KiB", {}).get("writer_fps")
        share = f" = {100 * row['writer_fps'] / one:.0f}% of 1-sub {_f(one)}/s" if one else ""
        text = (
            f"{_f(row['delivered_fps'])} frames/s delivered ({_f(row['delivered_MBps'])} MB/s); "
            f"writer {_f(row['writer_fps'])}/s{share}; p99 {_ms(row['p99_ms'])} ms"
        )
        return text, f"{_f(row['delivered_MB_per_cpu_s'])} MB/CPU-s"
    if scenario.startswith("G5"):
        expected = row["writer_frames"] * row["subscribers"]
        share = 100 * row["delivered_frames"] / expected if expected else 0
        text = (
            f"{share:.1f}% delivered; p50 {_ms(row['p50_ms'])} / p99 {_ms(row['p99_ms'])} / "
            f"max {_ms(row['max_ms'])} ms; writer {_f(row['writer_fps'])}/s"
        )
        return text, f"{_f(row['delivered_frames_per_cpu_s'])} frames/CPU-s"
    if scenario.startswith("G7"):
        text = (
            f"{_f(row['received'])} of {_f(row['n'])} in {_f(row['seconds'] * 1000)} ms "
            f"({_f(row['msgs_per_s'])} msg/s)"
        )
        return text, f"{_f(row['msgs_per_cpu_s'])} msg/CPU-s"
    if scenario.startswith("G8"):
        base = rows.get("G5 256KiB x32 flat", {})
        frozen = row.get("frozen") or {}
        share = (
            f" = {100 * row['writer_fps'] / base['writer_fps']:.0f}% of G5"
            if base.get("writer_fps") else ""
        )  # fmt: skip
        close = frozen.get("close_code")
        got = f"{frozen.get('frames', 0)} frames then " + (
            f"close {close}, dropped {_f(frozen.get('dropped'))}"
            if close is not None
            else f"no close ({frozen.get('error') or 'flag frame reached'})"
        )
        text = (
            f"writer {_f(row['writer_fps'])}/s{share}; healthy p99 {_ms(row['p99_ms'])} ms "
            f"(G5 {_ms(base.get('p99_ms'))}); server RSS {_f(row['rss_before_MiB'])} -> peak "
            f"{_f(row.get('rss_peak_MiB'))} -> {_f(row['rss_after_MiB'])} MiB "
            f"(+{_f(row.get('rss_peak_MiB', 0) - row['rss_before_MiB'])}; G5 without frozen: "
            f"+{_f(base.get('rss_peak_MiB', 0) - base.get('rss_before_MiB', 0))}); "
            f"frozen got {got}"
        )
        return text, f"{_f(row['delivered_MB_per_cpu_s'])} MB/CPU-s"
    return "", ""


def markdown(results: dict[str, Any]) -> str:
    targets = results["targets"]
    scenarios: list[str] = []
    for target in targets.values():
        for scenario in target["rows"]:
            if scenario not in scenarios:
                scenarios.append(scenario)
    tiled = targets.get("tiled", {}).get("rows", {})
    lines = [
        "| scenario | target | result | lost / dup / id gaps / seq gaps | server CPU "
        "| per server-CPU-s | vs Tiled |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for scenario in scenarios:
        for name, target in targets.items():
            row = target["rows"].get(scenario)
            if row is None:
                continue
            label = name + (" (quick sizes)" if target["sizes"] != results["mode"] else "")
            if "error" in row and len(row) == 1:
                lines.append(f"| {scenario} | {label} | error: {row['error']} | | | | |")
                continue
            text, normalized = _result(scenario, row, target)
            loss = f"{row['lost']} / {row['dups']} / {row['id_gaps']} / {row['seq_gaps']}"
            codes = [c[0] for c in row.get("closed") or []] + (
                [row["close"]] if row.get("close") else []
            )
            if codes:
                counts = ", ".join(f"{codes.count(c)} x {c}" for c in sorted(set(codes)))
                loss += f"; closed {counts}"
            if row.get("errors"):
                loss += f"; {row['errors']}"
            if "server_cores" in row:
                cpu = f"{row['server_cores']:.2f} cores"
                if row.get("client_cores") is not None:
                    cpu += f" (clients {row['client_cores']:.2f})"
            else:
                cpu = f"{row['server_cpu_s']:.2f} s"
            ratio = "-"
            mine, higher = _primary(scenario, row)
            theirs, _ = _primary(scenario, tiled.get(scenario, {}))
            if name != "tiled" and mine and theirs:
                ratio = f"{(mine / theirs if higher else theirs / mine):.1f}x"
                rate = row.get("rate_hz")
                if rate and tiled[scenario].get("writer_fps", rate) < 0.9 * rate:
                    ratio += f" (Tiled's writer reached only {tiled[scenario]['writer_fps']:.0f}/s)"
            lines.append(
                f"| {scenario} | {label} | {text} | {loss} | {cpu} | {normalized} | {ratio} |"
            )
    return "\n".join(lines)


WRITER_AND_SUBS = "py raw-HTTP writer + websockets subs"


def _stream_row(
    scenario: str, name: str, row: dict[str, Any], text: str, notes: str
) -> dict[str, Any]:
    """The protocol row of one stream_bench result (see protocol.py)."""
    code, _, case = scenario.partition(" ")
    latency_first = code == "G4" or scenario.startswith("G5 256KiB x32 @")
    elapsed = row.get("elapsed_s") or row.get("seconds")
    codes = [c[0] for c in row.get("closed") or []]
    if codes:
        closed = "closed " + ", ".join(f"{codes.count(c)} x {c}" for c in sorted(set(codes)))
        notes = f"{notes}; {closed}" if notes else closed
    rate = row.get("rate_hz")
    if rate and (row.get("writer_fps") or 0) < 0.9 * rate:
        short = f"writer reached only {row['writer_fps']:,.0f} of {rate:,.0f} frames/s"
        notes = f"{notes}; {short}" if notes else short
    if code == "G7":
        metric, value, work, unit = "msg/s", row.get("msgs_per_s"), row.get("received"), "msg"
    elif latency_first:
        metric, value, unit = "p99 ms", row.get("p99_ms"), "frames"
        work = row.get("delivered_frames")
    elif code in ("G8", "G13"):
        metric, value = "writer frames/s", row.get("writer_fps")
        work, unit = (row.get("delivered_MBps") or 0) * (elapsed or 0), "MB"
    else:
        metric, value = "delivered frames/s", row.get("delivered_fps")
        work, unit = (row.get("delivered_MBps") or 0) * (elapsed or 0), "MB"
    if unit == "frames" and (row.get("nbytes") or 0) >= 256 * 1024:
        work, unit = (row.get("delivered_MBps") or 0) * (elapsed or 0), "MB"
    return protocol.row(
        code, case, name,
        "websockets subscriber (start=0)" if code == "G7" else WRITER_AND_SUBS,
        metric, value, higher_is_better=not latency_first,
        server_cpu_s=row.get("server_cpu_s"), work=work, per_cpu_unit=unit,
        loss=row.get("lost"), dup=row.get("dups"),
        gaps=(row.get("id_gaps") or 0) + (row.get("seq_gaps") or 0),
        frames=row.get("received") if code == "G7" else row.get("delivered_frames"),
        detail=text, notes=notes,
    )  # fmt: skip


def rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every stream_bench result as protocol rows."""
    out: list[dict[str, Any]] = []
    for name, target in results["targets"].items():
        for scenario, row in target["rows"].items():
            code, _, case = scenario.partition(" ")
            if "error" in row and len(row) == 1:
                out.append(protocol.row(code, case, name, "-", "error", None,
                                        notes=row["error"]))  # fmt: skip
                continue
            text, _ = _result(scenario, row, target)
            notes = "quick sizes" if target["sizes"] != results["mode"] else ""
            out.append(_stream_row(scenario, name, row, text, notes))
    return out
