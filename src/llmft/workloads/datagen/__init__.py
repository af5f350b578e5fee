"""The dataset generation workload: documents in, question/answer pairs and a corpus out.

`python -m llmft.workloads.datagen --spec FILE` runs `pipeline.main` on a resolved
DatasetGeneration spec; the modules follow the recipe's steps (documents, chunking,
splitting, prompting, backends, parsing, quality, worklog, hub).
"""
