{{- define "corral.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "corral.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "corral.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "corral.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "corral.selectorLabels" -}}
app.kubernetes.io/name: {{ include "corral.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "corral.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "corral.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "corral.sqlite" -}}
{{- if eq .Values.store.type "sqlite" -}}true{{- else if eq .Values.store.type "postgres" -}}{{- else -}}{{- fail "store.type must be sqlite or postgres" -}}{{- end -}}
{{- end -}}

{{/* corral.yaml: the keys the chart owns, merged over .Values.config. */}}
{{- define "corral.config" -}}
{{- $c := deepCopy .Values.config -}}
{{- $_ := set $c "listen" (printf "0.0.0.0:%v" .Values.listen.port) -}}
{{- if .Values.api.separate -}}
{{- $_ := set $c "api_listen" (printf "0.0.0.0:%v" .Values.api.port) -}}
{{- end -}}
{{- $_ := set $c "data_dir" "/var/lib/corral" -}}
{{- if include "corral.sqlite" . -}}
{{- $_ := set $c "store" "sqlite" -}}
{{- else -}}
{{- $_ := set $c "store" "env:CORRAL_POSTGRES_DSN" -}}
{{- end -}}
{{- $_ := set $c "controller_id" (default (include "corral.fullname" .) .Values.controllerId) -}}
{{- $_ := set $c "log" (dict "level" .Values.log.level "format" .Values.log.format) -}}
{{- toYaml $c -}}
{{- end -}}
