# download -> extract -> normalize -> split (one job per subject where it can be).


checkpoint fetch:
    output:
        extracted=directory(f"{SOURCE_DIR}/extracted"),
    log:
        "logs/download/fetch.log",
    benchmark:
        "logs/benchmarks/fetch.tsv"
    conda:
        "../envs/brainseg.yaml"
    params:
        file=PARAMS,
        download=config["download"],
    shell:
        "brainseg download --params {params.file} --out-dir data/raw"
        " --source-dir $(dirname {output.extracted}) --fetch-only > {log} 2>&1"


rule download_subject:
    input:
        source=fetched_source,
        manifest=source_manifest,
    output:
        expand("data/raw/{{subject}}/{{subject}}_{key}.nii.gz", key=RAW_KEYS),
    log:
        "logs/download/{subject}.log",
    benchmark:
        "logs/benchmarks/download_subject/{subject}.tsv"
    conda:
        "../envs/brainseg.yaml"
    params:
        file=PARAMS,
        base=config["base"],
        download=config["download"],
        source_dir=SOURCE_DIR,
    shell:
        "brainseg download --params {params.file} --out-dir data/raw"
        " --source-dir {params.source_dir} --subject {wildcards.subject} --jobs 1"
        " > {log} 2>&1"


rule download:
    input:
        raw=all_raw,
    output:
        manifest="data/raw/manifest.csv",
    log:
        "logs/download/manifest.log",
    benchmark:
        "logs/benchmarks/download.tsv"
    conda:
        "../envs/brainseg.yaml"
    params:
        file=PARAMS,
        download=config["download"],
        source_dir=SOURCE_DIR,
    shell:
        "brainseg download --params {params.file} --out-dir data/raw --manifest-only"
        " --source-dir {params.source_dir} > {log} 2>&1"


rule extract:
    input:
        unpack(raw_subject),
    output:
        image="data/extracted/{subject}/image.npy",
        label="data/extracted/{subject}/label.npy",
        brain="data/extracted/{subject}/brain.npy",
        geometry="data/extracted/{subject}/geometry.json",
    log:
        "logs/extract/{subject}.log",
    benchmark:
        "logs/benchmarks/extract/{subject}.tsv"
    conda:
        "../envs/brainseg.yaml"
    params:
        file=PARAMS,
        extract=config["extract"],
    shell:
        "brainseg extract --params {params.file} --raw-dir data/raw --out-dir data/extracted"
        " --subject {wildcards.subject} --jobs 1 > {log} 2>&1"


rule normalize:
    input:
        unpack(extracted_subject),
    output:
        image="data/slices/{subject}/image.npy",
        label="data/slices/{subject}/label.npy",
        meta="data/slices/{subject}/meta.json",
    log:
        "logs/normalize/{subject}.log",
    benchmark:
        "logs/benchmarks/normalize/{subject}.tsv"
    conda:
        "../envs/brainseg.yaml"
    params:
        file=PARAMS,
        normalize=config["normalize"],
    shell:
        "brainseg normalize --params {params.file} --in-dir data/extracted"
        " --out-dir data/slices --subject {wildcards.subject} --jobs 1 > {log} 2>&1"


rule split:
    input:
        manifest="data/raw/manifest.csv",
    output:
        splits="data/splits.csv",
    log:
        "logs/split.log",
    benchmark:
        "logs/benchmarks/split.tsv"
    conda:
        "../envs/brainseg.yaml"
    params:
        file=PARAMS,
        base=config["base"],
        split=config["split"],
    shell:
        "brainseg split --params {params.file} --manifest {input.manifest}"
        " --out {output.splits} > {log} 2>&1"
