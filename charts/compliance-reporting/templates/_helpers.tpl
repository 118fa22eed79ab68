{{/* Names */}}
{{- define "compliance.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "compliance.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "compliance.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "compliance.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" . "component" "api") */}}
{{- define "compliance.selectorLabels" -}}
app.kubernetes.io/name: {{ include "compliance.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Pod template labels of one component: compliance.labels plus its component, each key once
(strict YAML parsers, skaffold's post-renderer among them, refuse a repeated key):
(dict "root" . "component" "api") */}}
{{- define "compliance.podLabels" -}}
{{ include "compliance.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "compliance.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}
{{- end -}}

{{- define "compliance.secretName" -}}
{{- default (include "compliance.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "compliance.redisUrl" -}}
{{- if .Values.redis.external.url -}}
{{ .Values.redis.external.url }}
{{- else if .Values.redis.enabled -}}
{{- /* In sentinel mode the host is not used: the sentinels name the primary. */ -}}
redis://{{ include "compliance.fullname" . }}-redis:6379/0
{{- else if not .Values.secrets.existingSecret -}}
{{- fail "set redis.external.url (production), redis.enabled=true (trial), or secrets.existingSecret with COMPLIANCE_REDIS_URL" -}}
{{- end -}}
{{- end -}}

{{/* True (non-empty) when the in-chart Redis runs as primary, replicas and sentinels. */}}
{{- define "compliance.inChartSentinel" -}}
{{- if and .Values.redis.enabled (not .Values.redis.external.url) (eq .Values.redis.mode "sentinel") -}}true{{- end -}}
{{- end -}}

{{/* COMPLIANCE_REDIS_SENTINELS: the external sentinels, or the in-chart sentinel pods. */}}
{{- define "compliance.redisSentinels" -}}
{{- if .Values.redis.external.url -}}
{{ .Values.redis.external.sentinels }}
{{- else if include "compliance.inChartSentinel" . -}}
{{- $name := printf "%s-redis-sentinel" (include "compliance.fullname" .) -}}
{{- $hosts := list -}}
{{- range $i := until 3 -}}
{{- $hosts = append $hosts (printf "%s-%d.%s.%s.svc:26379" $name $i $name $.Release.Namespace) -}}
{{- end -}}
{{ join "," $hosts }}
{{- end -}}
{{- end -}}

{{- define "compliance.redisSentinelMaster" -}}
{{- if .Values.redis.external.url -}}
{{ .Values.redis.external.sentinelMaster }}
{{- else -}}
{{ .Values.redis.sentinel.masterName }}
{{- end -}}
{{- end -}}

{{/* Spread pods of one component over nodes: (dict "root" . "component" "redis") */}}
{{- define "compliance.redisAntiAffinity" -}}
podAntiAffinity:
  {{- if eq .root.Values.redis.sentinel.antiAffinity "hard" }}
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "compliance.selectorLabels" . | nindent 10 }}
  {{- else }}
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "compliance.selectorLabels" . | nindent 12 }}
  {{- end }}
{{- end -}}

{{- define "compliance.storageClaim" -}}
{{- default (printf "%s-reports" (include "compliance.fullname" .)) .Values.storage.filesystem.existingClaim -}}
{{- end -}}

{{/* Guard rails that cannot be expressed in the schema. */}}
{{- define "compliance.validate" -}}
{{- if and .Values.redis.external.sentinels (not .Values.redis.external.url) -}}
{{- fail "redis.external.sentinels needs redis.external.url too: it gives the database number and password (its host and port are not used)" -}}
{{- end -}}
{{- if hasKey .Values.config "COMPLIANCE_PUBLIC_BASE_URL" -}}
{{- fail "set api.publicBaseUrl, not config.COMPLIANCE_PUBLIC_BASE_URL (the chart sets it from api.publicBaseUrl)" -}}
{{- end -}}
{{- if and .Values.autoscaler.enabled (not .Values.operator.enabled) -}}
{{- fail "autoscaler.enabled needs operator.enabled: the operator acts on WorkerAutoscaler resources" -}}
{{- end -}}
{{- range $kind := list "reports" "deliveries" -}}
{{- if and $.Values.autoscaler.enabled (index $.Values.workers $kind "hpa" "enabled") -}}
{{- fail (printf "workers.%s.hpa.enabled and autoscaler.enabled both scale the %s worker Deployment: enable one of them" $kind $kind) -}}
{{- end -}}
{{- end -}}
{{- if and (gt (int .Values.operator.replicas) 1) (not .Values.operator.peering.enabled) .Values.operator.enabled -}}
{{- fail "operator.replicas > 1 needs operator.peering.enabled: without peering every replica acts" -}}
{{- end -}}
{{- $softShutdown := .Values.config.COMPLIANCE_WORKER_SOFT_SHUTDOWN_TIMEOUT | default 30 | float64 -}}
{{- range $kind := list "reports" "deliveries" -}}
{{- if le (float64 (index $.Values.workers $kind "terminationGracePeriodSeconds")) $softShutdown -}}
{{- fail (printf "workers.%s.terminationGracePeriodSeconds must exceed COMPLIANCE_WORKER_SOFT_SHUTDOWN_TIMEOUT (%v s), or pods are killed mid soft shutdown" $kind $softShutdown) -}}
{{- end -}}
{{- end -}}
{{- $maxConnections := .Values.config.COMPLIANCE_REDIS_MAX_CONNECTIONS | default 200 | int -}}
{{- if and (eq (.Values.config.COMPLIANCE_DELIVERY_ENGINE | default "pump") "threads") (lt $maxConnections (add (int .Values.workers.deliveries.concurrency) 8 | int)) -}}
{{- fail (printf "workers.deliveries.concurrency=%v with COMPLIANCE_DELIVERY_ENGINE=threads needs config.COMPLIANCE_REDIS_MAX_CONNECTIONS >= %v" .Values.workers.deliveries.concurrency (add (int .Values.workers.deliveries.concurrency) 8)) -}}
{{- end -}}
{{- if and (eq .Values.storage.backend "s3") (not .Values.storage.s3.bucket) -}}
{{- fail "storage.backend=s3 needs storage.s3.bucket" -}}
{{- end -}}
{{- end -}}

{{/* Base URL of the API in links the service sends: api.publicBaseUrl, else the in-cluster Service. */}}
{{- define "compliance.publicBaseUrl" -}}
{{- if .Values.api.publicBaseUrl -}}
{{- .Values.api.publicBaseUrl | trimSuffix "/" -}}
{{- else -}}
{{- printf "http://%s-api.%s.svc:%v" (include "compliance.fullname" .) .Release.Namespace .Values.api.service.port -}}
{{- end -}}
{{- end -}}

{{/* Env shared by api and workers. */}}
{{- define "compliance.env" -}}
- name: PROMETHEUS_MULTIPROC_DIR
  value: /tmp/metrics
- name: COMPLIANCE_PUBLIC_BASE_URL
  value: {{ include "compliance.publicBaseUrl" . | quote }}
{{- if eq .Values.storage.backend "s3" }}
- name: COMPLIANCE_STORAGE_BACKEND
  value: s3
- name: COMPLIANCE_S3_BUCKET
  value: {{ .Values.storage.s3.bucket | quote }}
- name: COMPLIANCE_S3_PREFIX
  value: {{ .Values.storage.s3.prefix | quote }}
{{- with .Values.storage.s3.endpointUrl }}
- name: COMPLIANCE_S3_ENDPOINT_URL
  value: {{ . | quote }}
{{- end }}
{{- else }}
- name: COMPLIANCE_STORAGE_BACKEND
  value: filesystem
- name: COMPLIANCE_STORAGE_DIR
  value: /data/reports
{{- end }}
{{- end -}}

{{- define "compliance.envFrom" -}}
- configMapRef:
    name: {{ include "compliance.fullname" . }}
- secretRef:
    name: {{ include "compliance.secretName" . }}
{{- if and (eq .Values.storage.backend "s3") .Values.storage.s3.credentialsSecret }}
- secretRef:
    name: {{ .Values.storage.s3.credentialsSecret }}
{{- end }}
{{- end -}}

{{/* Writable scratch: /tmp (and the metrics dir under it); the root FS is read-only. */}}
{{- define "compliance.scratchVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- end -}}

{{- define "compliance.storageVolume" -}}
{{- if eq .Values.storage.backend "filesystem" }}
- name: reports
  persistentVolumeClaim:
    claimName: {{ include "compliance.storageClaim" . }}
{{- end }}
{{- end -}}

{{- define "compliance.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if eq .Values.storage.backend "filesystem" }}
- name: reports
  mountPath: /data/reports
{{- end }}
{{- end -}}
