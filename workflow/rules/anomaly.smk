# anomaly (optional, anomaly.enabled): a 3D autoencoder trained on tumour-free brain from
# the slice store; its reconstruction error is scored as a tumour map (reports/anomaly.json).
# One job on one thread, in every runner (DVC: the anomaly stage, foreach anomaly.runs): a
# CPU training's weights depend on its thread count.


rule anomaly:
    input:
        slices=all_slices,
        splits="data/splits.csv",
    output:
        model="models/autoencoder.pt",
        metrics=report(
            "reports/anomaly.json",
            caption="../report/anomaly.rst",
            category="Anomaly",
            labels={"figure": "anomaly map metrics (JSON)"},
        ),
        per_subject="reports/anomaly_subjects.csv",
        figures=report(
            directory("reports/anomaly"),
            patterns=["{name}.png"],
            caption="../report/anomaly.rst",
            category="Anomaly",
            labels={"figure": "{name}"},
        ),
    log:
        "logs/anomaly.log",
    benchmark:
        "logs/benchmarks/anomaly.tsv"
    conda:
        "../envs/brainseg.yaml"
    threads: ANOMALY_THREADS
    params:
        file=PARAMS,
        anomaly=config["anomaly"],
        seed=config["base"]["seed"],
        synthetic=config["download"]["synthetic"],
        extract=config["extract"],
        normalize=config["normalize"],
        dpi=config["figures"]["dpi"],
    shell:
        "brainseg anomaly --params {params.file} --slices-dir data/slices"
        " --splits {input.splits} --model-out {output.model}"
        " --metrics-out {output.metrics} --per-subject-out {output.per_subject}"
        " --figures-dir {output.figures} --threads {threads} > {log} 2>&1"
