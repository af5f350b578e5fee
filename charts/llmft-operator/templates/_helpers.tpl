{{/*
Names and labels, defined once. Objects are named after the release ("llmft" for a release
called llmft, since the chart name contains it) with a suffix per component.
*/}}

{{- define "llmft.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llmft.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains .Release.Name $name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "llmft.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that never change for an object: used in selectors. Pass (dict "ctx" $ "component" "x"). */}}
{{- define "llmft.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmft.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every object's labels. Pass (dict "ctx" $ "component" "x"). */}}
{{- define "llmft.labels" -}}
{{ include "llmft.selectorLabels" . }}
app.kubernetes.io/part-of: llmft
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ include "llmft.chart" .ctx }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "llmft.operatorServiceAccountName" -}}
{{- default (printf "%s-operator" (include "llmft.fullname" .)) .Values.operator.serviceAccount.name }}
{{- end }}

{{/* A reference to one of the four llmft images. Pass (dict "ctx" $ "image" "trainer"). */}}
{{- define "llmft.image" -}}
{{- $img := index .ctx.Values.images .image }}
{{- $ref := printf "%s/%s" (trimSuffix "/" .ctx.Values.images.registry) $img.repository }}
{{- if $img.digest }}
{{- printf "%s@%s" $ref $img.digest }}
{{- else }}
{{- printf "%s:%s" $ref (coalesce $img.tag .ctx.Values.images.tag .ctx.Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Namespaces that get the workload ServiceAccount, its RoleBinding and the artefact PVC. */}}
{{- define "llmft.workloadNamespaces" -}}
{{- if .Values.workloads.namespaces }}
{{- toJson .Values.workloads.namespaces }}
{{- else }}
{{- toJson (list (default .Release.Namespace .Values.operator.watchNamespace)) }}
{{- end }}
{{- end }}

{{- define "llmft.ollamaHost" -}}
{{- if .Values.ollama.host }}
{{- .Values.ollama.host }}
{{- else if .Values.ollama.enabled }}
{{- printf "http://%s-ollama.%s.svc:%d" (include "llmft.fullname" .) .Release.Namespace (int .Values.ollama.port) }}
{{- end }}
{{- end }}

{{- define "llmft.weaviateUrl" -}}
{{- if .Values.weaviate.url }}
{{- .Values.weaviate.url }}
{{- else if .Values.weaviate.enabled }}
{{- printf "http://%s-weaviate.%s.svc:%d" (include "llmft.fullname" .) .Release.Namespace (int .Values.weaviate.httpPort) }}
{{- end }}
{{- end }}

{{/*
The pod and container security settings of the restricted Pod Security profile; every pod in
this chart uses them. uid 1000 is the user the llmft images create.
*/}}
{{- define "llmft.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "llmft.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop:
    - ALL
{{- end }}

{{/* The in-cluster URL of this release's MLflow server (empty when it is not deployed). */}}
{{- define "llmft.mlflowUrl" -}}
{{- if .Values.mlflow.enabled }}
{{- printf "http://%s-mlflow.%s.svc:%d" (include "llmft.fullname" .) .Release.Namespace (int .Values.mlflow.port) }}
{{- end }}
{{- end }}
