{{/* A worker Deployment: (dict "root" . "kind" "reports"|"deliveries") */}}
{{- define "compliance.workerDeployment" -}}
{{- $root := .root -}}
{{- $w := index $root.Values.workers .kind -}}
{{- $component := printf "worker-%s" .kind -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "compliance.fullname" $root }}-{{ $component }}
  labels:
    {{- include "compliance.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $component }}
spec:
  {{- if not (or $w.hpa.enabled $root.Values.autoscaler.enabled) }}
  replicas: {{ $w.replicas }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "compliance.selectorLabels" (dict "root" $root "component" $component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "compliance.podLabels" (dict "root" $root "component" $component) | nindent 8 }}
        compliance.io/worker: "true"
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/config/configmap.yaml") $root | sha256sum }}
    spec:
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.serviceAccountName }}
      serviceAccountName: {{ . }}
      {{- end }}
      automountServiceAccountToken: false
      # Celery's soft shutdown (SIGTERM, remapped to SIGQUIT by the CLI) must fit in here.
      terminationGracePeriodSeconds: {{ $w.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: worker
          image: {{ include "compliance.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          # The hostname is the pod name: the operator maps busy Celery workers to pods by it.
          args: ["worker", "--kind", "{{ .kind }}"]
          ports:
            - name: metrics
              containerPort: {{ $root.Values.workers.metricsPort }}
              protocol: TCP
          env:
            {{- include "compliance.env" $root | nindent 12 }}
            # The pool size as a setting (not --concurrency), so the service's own checks see it.
            - name: {{ ternary "COMPLIANCE_WORKER_CONCURRENCY" "COMPLIANCE_DELIVERY_CONCURRENCY" (eq .kind "reports") }}
              value: {{ $w.concurrency | quote }}
          envFrom:
            {{- include "compliance.envFrom" $root | nindent 12 }}
          # Fails when the worker's consumer, delivery engine or sweeper stops turning (a Redis
          # outage excused): `compliance worker-alive` reads the heartbeat file the worker writes.
          livenessProbe:
            exec:
              command: ["compliance", "worker-alive"]
            initialDelaySeconds: 30
            periodSeconds: 20
            timeoutSeconds: 10
            failureThreshold: 3
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          resources:
            {{- toYaml $w.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if and (eq .kind "reports") (eq $root.Values.storage.backend "filesystem") }}
            - name: reports
              mountPath: /data/reports
            {{- end }}
      volumes:
        {{- include "compliance.scratchVolume" $root | nindent 8 }}
        {{- if eq .kind "reports" }}
        {{- include "compliance.storageVolume" $root | nindent 8 }}
        {{- end }}
      {{- with $root.Values.workers.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.workers.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.workers.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{- define "compliance.workerPdb" -}}
{{- $root := .root -}}
{{- $w := index $root.Values.workers .kind -}}
{{- $component := printf "worker-%s" .kind -}}
{{- if $w.pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "compliance.fullname" $root }}-{{ $component }}
  labels:
    {{- include "compliance.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $component }}
spec:
  maxUnavailable: {{ $w.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "compliance.selectorLabels" (dict "root" $root "component" $component) | nindent 6 }}
{{- end }}
{{- end -}}

{{- define "compliance.workerHpa" -}}
{{- $root := .root -}}
{{- $w := index $root.Values.workers .kind -}}
{{- $component := printf "worker-%s" .kind -}}
{{- if $w.hpa.enabled }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "compliance.fullname" $root }}-{{ $component }}
  labels:
    {{- include "compliance.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $component }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "compliance.fullname" $root }}-{{ $component }}
  minReplicas: {{ $w.hpa.minReplicas }}
  maxReplicas: {{ $w.hpa.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $w.hpa.targetCPUUtilizationPercentage }}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 300
      policies:
        - {type: Pods, value: 1, periodSeconds: 60}
{{- end }}
{{- end -}}

{{- define "compliance.workerAutoscaler" -}}
{{- $root := .root -}}
{{- $a := index $root.Values.autoscaler .kind -}}
{{- $component := printf "worker-%s" .kind -}}
{{- if $root.Values.autoscaler.enabled }}
apiVersion: reporting.compliance.io/v1alpha1
kind: WorkerAutoscaler
metadata:
  name: {{ include "compliance.fullname" $root }}-{{ $component }}
  annotations:
    # A hook runs after the release's CRDs exist; a plain template would fail on first install.
    helm.sh/hook: post-install,post-upgrade
    helm.sh/hook-weight: "5"
    helm.sh/hook-delete-policy: before-hook-creation
  labels:
    {{- include "compliance.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ $component }}
spec:
  scaleTargetRef:
    name: {{ include "compliance.fullname" $root }}-{{ $component }}
  redis:
    secretRef:
      name: {{ include "compliance.secretName" $root }}
      key: COMPLIANCE_REDIS_URL
    keyPrefix: compliance-
  queue: {{ ternary "compliance_queue" "compliance_webhooks" (eq .kind "reports") }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  targetTasksPerReplica: {{ $a.targetTasksPerReplica }}
  pollingIntervalSeconds: {{ $root.Values.autoscaler.pollingIntervalSeconds }}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      maxStep: 4
    scaleDown:
      stabilizationWindowSeconds: {{ $root.Values.autoscaler.scaleDownStabilizationSeconds }}
      maxStep: 1
  breakerPolicy:
    enabled: {{ eq .kind "deliveries" }}
    openShareThreshold: {{ $root.Values.autoscaler.breakerOpenShareThreshold }}
    backlogShareThreshold: 0.5
  paused: false
{{- end }}
{{- end -}}
