# train -> postprocess -> evaluate (whole cohort: one job each, all cores), and train ->
# export (the ONNX model). With cross-validation (split.folds >= 2), one train_fold job
# per fold (DVC: one train_fold stage each), on one thread each, then `train` writes
# their ensemble.


rule train_fold:
    input:
        slices=all_slices,
        splits="data/splits.csv",
    output:
        model="models/folds/{fold}/model.pt",
        run_info="models/folds/{fold}/mlflow_run.json",
        history="models/folds/{fold}/train_history.csv",
    log:
        "logs/train/fold{fold}.log",
    benchmark:
        "logs/benchmarks/train_fold/{fold}.tsv"
    conda:
        "../envs/brainseg.yaml"
    # One thread per fold, in every runner: a CPU training's weights depend on its thread
    # count, and folds side by side use the cores better than one fold on all of them.
    threads: FOLD_THREADS
    resources:
        processes=1,  # > 1: torchrun, data-parallel (see train_launch)
        # Slurm: no --ntasks-per-gpu from `tasks` (a job over nodes has one task per node)
        tasks_per_gpu=0,
    params:
        file=PARAMS,
        base=config["base"],
        train=config["train"],
        launch=train_launch,
    shell:
        "{params.launch} --params {params.file} --slices-dir data/slices"
        " --splits {input.splits} --fold {wildcards.fold} --model-out {output.model}"
        " --history-out {output.history} --run-info-out {output.run_info} > {log} 2>&1"


rule train:
    input:
        unpack(train_inputs),
    output:
        model="models/model.pt",
        run_info="models/mlflow_run.json",
        history="reports/train_history.csv",
    log:
        "logs/train.log",
    benchmark:
        "logs/benchmarks/train.tsv"
    conda:
        "../envs/brainseg.yaml"
    threads: MAX_THREADS
    # processes > 1: torchrun, data-parallel (see train_launch); with folds this job only
    # combines them (the processes resource of train_fold applies to each fold)
    resources:
        processes=1,
        tasks_per_gpu=0,
    params:
        file=PARAMS,
        base=config["base"],
        train=config["train"],
        folds=FOLDS_DIR,
        launch=train_launch if not FOLDS else "brainseg train --threads 1",
    shell:
        "{params.launch} --params {params.file} --slices-dir data/slices"
        " --splits {input.splits} --model-out {output.model}"
        " --history-out {output.history} --run-info-out {output.run_info}"
        " --folds-dir {params.folds} --combine-only > {log} 2>&1"


# The trained model as one ONNX graph (a fold ensemble averaged inside it), for ONNX
# Runtime deployments and `brainseg predict --model models/model.onnx`; logged to the
# training's MLflow run.
rule export:
    input:
        model="models/model.pt",
        run_info="models/mlflow_run.json",
    output:
        onnx="models/model.onnx",
    log:
        "logs/export.log",
    benchmark:
        "logs/benchmarks/export.tsv"
    conda:
        "../envs/brainseg.yaml"
    threads: 1
    shell:
        "brainseg export --model {input.model} --format onnx --out {output.onnx}"
        " --run-info {input.run_info} --threads {threads} > {log} 2>&1"


rule postprocess:
    input:
        model="models/model.pt",
        run_info="models/mlflow_run.json",
        splits="data/splits.csv",
        manifest="data/raw/manifest.csv",
        raw=all_raw,
    output:
        settings="reports/postprocess.json",
        table="reports/postprocess.csv",
        cv="reports/postprocess_cv.json",
    log:
        "logs/postprocess.log",
    benchmark:
        "logs/benchmarks/postprocess.tsv"
    conda:
        "../envs/brainseg.yaml"
    threads: MAX_THREADS
    params:
        file=PARAMS,
        threshold=config["evaluate"]["threshold"],
        batch_size=config["evaluate"]["batch_size"],
        postprocess=config["postprocess"],
    shell:
        "brainseg postprocess --params {params.file} --model {input.model}"
        " --splits {input.splits} --raw-dir data/raw --settings-out {output.settings}"
        " --table-out {output.table} --cv-out {output.cv} --run-info {input.run_info}"
        " --threads {threads} > {log} 2>&1"


rule evaluate:
    input:
        model="models/model.pt",
        run_info="models/mlflow_run.json",
        splits="data/splits.csv",
        manifest="data/raw/manifest.csv",
        raw=all_raw,
        postprocess="reports/postprocess.json",
    output:
        predictions=directory("data/predictions"),
        per_subject=report(
            "reports/per_subject.csv",
            caption="../report/per_subject.rst",
            category="Evaluation",
            labels={"figure": "metrics per subject (CSV)"},
        ),
        metrics=report(
            "reports/metrics.json",
            caption="../report/metrics.rst",
            category="Evaluation",
            labels={"figure": "summary metrics (JSON)"},
        ),
    log:
        "logs/evaluate.log",
    benchmark:
        "logs/benchmarks/evaluate.tsv"
    conda:
        "../envs/brainseg.yaml"
    threads: MAX_THREADS
    params:
        file=PARAMS,
        evaluate=config["evaluate"],
    shell:
        "brainseg evaluate --params {params.file} --model {input.model}"
        " --splits {input.splits} --raw-dir data/raw --pred-dir {output.predictions}"
        " --per-subject-out {output.per_subject} --metrics-out {output.metrics}"
        " --run-info {input.run_info} --postprocess {input.postprocess}"
        " --threads {threads} > {log} 2>&1"
