"""Ratios, targets and the printed table of `bench serve`."""

from __future__ import annotations

from typing import Any

# Targets of the serving path, as ratios from one run (see docs/benchmarks.md).
MIN_THROUGHPUT_VS_RAW = 0.95
MIN_GAIN_FRACTION = 0.90
MAX_OVERHEAD_MS = 15.0
MAX_MAP_SHARE = 0.05


def _level(model: dict[str, Any], server: str, clients: int) -> dict[str, Any] | None:
    return model["servers"].get(server, {}).get("levels", {}).get(str(clients))


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def compute_ratios(model: dict[str, Any]) -> dict[str, Any]:
    """Return the target ratios of one model's results, each with its target and whether it is met."""
    raw = model["raw"]
    raw_best = raw["best_throughput_ips"]
    raw_gain = raw_best / raw["throughput_ips"]["1"]

    def throughput(server: str, clients: int) -> float | None:
        level = _level(model, server, clients)
        return level["throughput_rps"] if level else None

    def p50(server: str, clients: int) -> float | None:
        level = _level(model, server, clients)
        return level["p50_ms"] if level else None

    service_32 = throughput("service_adaptive", 32)
    peer_32 = throughput("litserve", 32)
    service_gain = _ratio(service_32, throughput("service_batch1", 32))
    service_p50 = p50("service_adaptive", 1)
    peer_p50 = p50("litserve", 1)
    stages = model["servers"]["service_adaptive"].get("one_client_stages", {})

    ratios: dict[str, Any] = {
        "raw_batching_gain": round(raw_gain, 3),
        "service_32_vs_raw_best": _ratio(service_32, raw_best),
        "litserve_32_vs_raw_best": _ratio(peer_32, raw_best),
        "service_32_vs_litserve_32": _ratio(service_32, peer_32),
        "service_batching_gain": service_gain,
        "service_gain_vs_raw_gain": _ratio(service_gain, raw_gain),
        "service_overhead_ms": round(service_p50 - raw["single_engine_ms"], 1) if service_p50 is not None else None,
        "service_overhead_vs_generate_ms": round(service_p50 - raw["single_generate_ms"], 1) if service_p50 is not None else None,
        "litserve_overhead_ms": round(peer_p50 - raw["single_engine_ms"], 1) if peer_p50 is not None else None,
        "map_share": stages.get("map_share"),
    }
    ratios["targets"] = {
        "service_32_vs_raw_best": _check(ratios["service_32_vs_raw_best"], MIN_THROUGHPUT_VS_RAW, at_least=True),
        "service_above_litserve": _check(ratios["service_32_vs_litserve_32"], 1.0, at_least=True, strict=True),
        "service_gain_vs_raw_gain": _check(ratios["service_gain_vs_raw_gain"], MIN_GAIN_FRACTION, at_least=True),
        "service_overhead_ms": _check(ratios["service_overhead_ms"], MAX_OVERHEAD_MS, at_least=False),
        "map_share": _check(ratios["map_share"], MAX_MAP_SHARE, at_least=False),
    }
    return ratios


def _check(value: float | None, target: float, at_least: bool, strict: bool = False) -> dict[str, Any]:
    if value is None:
        met = None
    elif at_least:
        met = value > target if strict else value >= target
    else:
        met = value <= target
    return {"value": value, "target": target, "at_least": at_least, "met": met}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_report(report: dict[str, Any]) -> str:
    """Return the printed tables: raw sweep, servers per client count, and the target ratios."""
    lines = [""]
    for model in report["models"]:
        raw = model["raw"]
        lines.append(f"== {model['model']} ==")
        sizes = list(raw["throughput_ips"])
        lines.append("raw generate, images/s by batch size: " + "  ".join(f"{s}: {raw['throughput_ips'][s]:.3f}" for s in sizes))
        lines.append(
            f"raw best batch {raw['best_batch_size']} ({raw['best_throughput_ips']:.3f} images/s); "
            f"single image: generate {raw['single_generate_ms']:.1f} ms, engine with decode and map {raw['single_engine_ms']:.1f} ms "
            f"(median of {raw['rounds']} rounds)"
        )

        lines.append(f"{'server':<18} {'batch':>5} {'clients':>7} {'req/s':>8} {'x raw best':>10} {'p50 ms':>9} {'p95 ms':>9} {'ok':>7}")
        for name, server in model["servers"].items():
            for clients, level in server["levels"].items():
                vs_raw = level["throughput_rps"] / raw["best_throughput_ips"]
                lines.append(
                    f"{name:<18} {server['max_batch_size']:>5} {clients:>7} {level['throughput_rps']:>8.3f} {vs_raw:>10.3f} "
                    f"{level['p50_ms']:>9.1f} {level['p95_ms']:>9.1f} {level['ok']:>3}/{level['sent']:<3}"
                )
        for name, server in model["servers"].items():
            load = server.get("model_load_s")
            load_text = f", model load {load:.1f} s" if load is not None else ""
            lines.append(f"cold start {name}: {server['cold_start_s']:.1f} s to ready{load_text}")
            if "one_client_stages" in server:
                stages = server["one_client_stages"]
                lines.append(
                    f"one-client stages {name} (median ms): "
                    + ", ".join(f"{key} {value}" for key, value in stages.items() if key != "map_share")
                    + f"; map share {_fmt(stages['map_share'])}"
                )

        ratios = model["ratios"]
        lines.append("ratios: " + ", ".join(f"{key} {_fmt(value)}" for key, value in ratios.items() if key != "targets"))
        for name, check in ratios["targets"].items():
            relation = ">=" if check["at_least"] else "<="
            status = {True: "met", False: "MISSED", None: "not measured"}[check["met"]]
            lines.append(f"  target {name} {relation} {check['target']}: {_fmt(check['value'])} {status}")
        lines.append("")

    lines.append(
        f"load average at start {report['load_average_start'][0]:.1f}, at end {report['load_average_end'][0]:.1f}; "
        f"wall time {report['wall_s']:.0f} s"
    )
    return "\n".join(lines)
