# figures: captioned for `snakemake --report reports/report.html`.


rule figures:
    input:
        history="reports/train_history.csv",
        per_subject="reports/per_subject.csv",
        predictions="data/predictions",
        run_info="models/mlflow_run.json",
        raw=all_raw,
    output:
        curves=report(
            "reports/figures/learning_curves.png",
            caption="../report/learning_curves.rst",
            category="Training",
        ),
        box=report(
            "reports/figures/dice_boxplot.png",
            caption="../report/dice_boxplot.rst",
            category="Evaluation",
        ),
        best=report(
            "reports/figures/overlay_best.png",
            caption="../report/overlay.rst",
            category="Overlays",
        ),
        median=report(
            "reports/figures/overlay_median.png",
            caption="../report/overlay.rst",
            category="Overlays",
        ),
        worst=report(
            "reports/figures/overlay_worst.png",
            caption="../report/overlay.rst",
            category="Overlays",
        ),
    log:
        "logs/figures.log",
    conda:
        "../envs/brainseg.yaml"
    params:
        file=PARAMS,
        figures=config["figures"],
    shell:
        "brainseg figures --params {params.file} --history {input.history}"
        " --per-subject {input.per_subject} --raw-dir data/raw"
        " --pred-dir {input.predictions} --out-dir reports/figures"
        " --run-info {input.run_info} > {log} 2>&1"
