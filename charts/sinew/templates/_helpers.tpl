{{/*
Names are fixed, not derived from the release: the control plane looks its objects up by name
(the webhook configurations sinew-injector and sinew-validator, the Service it has a certificate
for, its ServiceAccount in proxies' config), so a cluster has one Sinew release.
*/}}

{{/* Labels every object of the chart carries; `component` names the part. */}}
{{- define "sinew.labels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: sinew
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* The subset of the labels a Deployment selects its pods by (never changes on upgrade). */}}
{{- define "sinew.selectorLabels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "sinew.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .root.Chart.AppVersion) -}}
{{- end -}}

{{/*
Resources with every quantity a string: values may hold whole numbers (cpu: 2), the
schema refuses fractions, and the injector reads quantities as strings.
*/}}
{{- define "sinew.resources" -}}
{{- $out := dict -}}
{{- range $kind, $quantities := . -}}
{{- $strings := dict -}}
{{- range $name, $q := $quantities -}}
{{- if kindIs "string" $q -}}
{{- $_ := set $strings $name $q -}}
{{- else -}}
{{- $_ := set $strings $name (int64 $q | toString) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $out $kind $strings -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{- define "sinew.controlPlaneService" -}}
sinew-control-plane.{{ .Release.Namespace }}.svc
{{- end -}}

{{/* Where proxies send spans: the value, else the chart's Jaeger when it is on, else "". */}}
{{- define "sinew.tracingEndpoint" -}}
{{- if .Values.tracing.endpoint -}}
{{- .Values.tracing.endpoint -}}
{{- else if .Values.jaeger.enabled -}}
{{- printf "http://sinew-jaeger.%s.svc:4317" .Release.Namespace -}}
{{- end -}}
{{- end -}}
