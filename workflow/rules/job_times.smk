# Where the time goes: every job's wall time, CPU time and peak memory, read from the rules'
# `benchmark:` files under results/benchmarks/, per rule and per job, with the machine (CPU model,
# AVX2 / AVX-512 / AVX512-BF16 / AMX, cores, torch, GPU). Written after everything else; it reads
# whatever benchmark files exist, so it reflects the jobs run in this results folder (each job's
# latest run), not jobs that ran elsewhere. Its outputs sit next to the benchmark files, outside
# results/tables: times differ from run to run, results do not.


rule job_times:
    input:
        # Every final target, ancient: the table waits for all of them, but a later rerun of one of
        # them (a figure after a plotting edit) does not rewrite it. To refresh it after such
        # reruns: snakemake --forcerun job_times.
        ancient(all_targets()),
    output:
        rules=report(
            "results/benchmarks/job_times.csv",
            caption="../report/job_times.rst",
            category="Job times",
        ),
        jobs=report(
            "results/benchmarks/job_times_jobs.csv",
            caption="../report/job_times.rst",
            category="Job times",
        ),
        machine=report(
            "results/benchmarks/job_times_machine.csv",
            caption="../report/job_times.rst",
            category="Job times",
        ),
        md="results/benchmarks/job_times.md",
        parquet="results/benchmarks/job_times.parquet",
    log:
        "results/logs/job_times.log",
    benchmark:
        "results/benchmarks/job_times.tsv"
    localrule: True
    conda:
        "../../envs/torch.yaml"
    params:
        folder=lambda wc, output: os.path.dirname(output.md),
        # rule -> its benchmark pattern, wildcard constraints embedded (every rule exists by now)
        patterns=lambda wc: {
            r.name: str(r.benchmark) for r in workflow.rules if r.benchmark
        },
        own="results/benchmarks/job_times.tsv",
        logs="results/logs",
        seed=config["seed"],
    script:
        "../scripts/job_times.py"
