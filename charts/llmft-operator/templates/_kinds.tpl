{{- /* Generated from the kind registry (llmft.api.kinds) by `python -m llmft.api.crdgen`; do not edit. */ -}}
{{- define "llmft.kinds.all" -}}["datasetgenerations", "finetunejobs", "evaluations", "experiments"]{{- end }}
{{- define "llmft.kinds.created" -}}["finetunejobs", "evaluations"]{{- end }}
{{- define "llmft.kinds.workloadStatus" -}}["datasetgenerations/status", "finetunejobs/status", "evaluations/status"]{{- end }}
