"""Run every benchmark: `make bench`. Each writes its table to benchmarks/results/."""

from __future__ import annotations

from benchmarks import bench_federation, bench_governance, bench_reports, bench_synth


def main() -> None:
    bench_synth.main([])
    bench_governance.main([])
    bench_federation.main([])
    bench_reports.main([])


if __name__ == "__main__":
    main()
