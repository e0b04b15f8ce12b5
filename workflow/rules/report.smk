# figures: one caption per figure (workflow/report/*.rst) for
# `snakemake --report reports/report.html` (a single self-contained HTML file).


rule figures:
    input:
        history="reports/train_history.csv",
        per_subject="reports/per_subject.csv",
        predictions="data/predictions",
        run_info="models/mlflow_run.json",
        raw=all_raw,
        slices=all_slices,
        splits="data/splits.csv",
    output:
        curves=report(
            "reports/figures/learning_curves.png",
            caption="../report/learning_curves.rst",
            category="Training",
            labels={"figure": "learning curves"},
        ),
        box=report(
            "reports/figures/dice_boxplot.png",
            caption="../report/dice_boxplot.rst",
            category="Evaluation",
            labels={"figure": "Dice per region"},
        ),
        table=report(
            "reports/figures/per_subject_table.png",
            caption="../report/per_subject_table.rst",
            category="Evaluation",
            labels={"figure": "metrics per subject"},
        ),
        best=report(
            "reports/figures/overlay_best.png",
            caption="../report/overlay_best.rst",
            category="Overlays",
            labels={"figure": "best subject"},
        ),
        median=report(
            "reports/figures/overlay_median.png",
            caption="../report/overlay_median.rst",
            category="Overlays",
            labels={"figure": "median subject"},
        ),
        worst=report(
            "reports/figures/overlay_worst.png",
            caption="../report/overlay_worst.rst",
            category="Overlays",
            labels={"figure": "worst subject"},
        ),
        gif=report(
            "reports/figures/overlay_median.gif",
            caption="../report/overlay_gif.rst",
            category="Overlays",
            labels={"figure": "median subject, axial slices"},
        ),
        augmentation=report(
            "reports/figures/augmentation.png",
            caption="../report/augmentation.rst",
            category="Training",
            labels={"figure": "augmentation"},
        ),
    log:
        "logs/figures.log",
    benchmark:
        "logs/benchmarks/figures.tsv"
    conda:
        "../envs/brainseg.yaml"
    params:
        file=PARAMS,
        figures=config["figures"],
        augment=config["train"]["augment"],
        dims=config["train"]["model"]["dims"],
        patch=config["train"]["patch_size"],
        seed=config["base"]["seed"],
    shell:
        "brainseg figures --params {params.file} --history {input.history}"
        " --per-subject {input.per_subject} --raw-dir data/raw"
        " --pred-dir {input.predictions} --slices-dir data/slices"
        " --splits {input.splits} --out-dir reports/figures"
        " --run-info {input.run_info} > {log} 2>&1"


rule realism:
    input:
        manifest="data/raw/manifest.csv",
        raw=all_raw,
        model="models/model.pt",
        real=REAL_DIR,
        real_stats="workflow/real_stats/brats18_tune.json",
    output:
        summary="reports/realism.json",
        histograms=report(
            "reports/realism/histograms.png",
            caption="../report/realism.rst",
            category="Realism",
        ),
        volumes=report(
            "reports/realism/tumour_volumes.png",
            caption="../report/realism.rst",
            category="Realism",
        ),
        slices=report(
            "reports/realism/synthetic_vs_real.png",
            caption="../report/realism.rst",
            category="Realism",
        ),
        gaps_csv="reports/realism/cohort_gaps.csv",
        gaps_json="reports/realism/cohort_gaps.json",
        intensity=report(
            "reports/realism/cohort_intensity.png",
            caption="../report/cohort_intensity.rst",
            category="Realism",
        ),
        gaps=report(
            "reports/realism/cohort_gaps.png",
            caption="../report/cohort_gaps.rst",
            category="Realism",
        ),
    log:
        "logs/realism.log",
    benchmark:
        "logs/benchmarks/realism.tsv"
    conda:
        "../envs/brainseg.yaml"
    params:
        file=PARAMS,
        realism=config["realism"],
        extract=config["extract"],
        normalize=config["normalize"],
    shell:
        "brainseg realism --params {params.file} --raw-dir data/raw --real {input.real}"
        " --real-stats {input.real_stats}"
        " --model {input.model} --out-dir reports/realism"
        " --summary-out {output.summary} > {log} 2>&1"
