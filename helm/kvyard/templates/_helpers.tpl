{{/*
Names. The RayService name is at most 47 characters and a DNS-1035 label (KubeRay's rule), so
the RayCluster, pod and service names KubeRay derives from it stay valid.
*/}}
{{- define "kvyard.name" -}}
{{- .Chart.Name | trunc 47 | trimSuffix "-" -}}
{{- end -}}

{{- define "kvyard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 47 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 47 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kvyard.serveServiceName" -}}
{{- include "kvyard.fullname" . -}}-serve-svc
{{- end -}}

{{- define "kvyard.redisName" -}}
{{- include "kvyard.fullname" . -}}-redis
{{- end -}}

{{- define "kvyard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kvyard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kvyard.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "kvyard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "kvyard.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
Where the frontends' shared router state lives: the in-chart Redis, an external URL, or nothing
(then app.redis_url is left as given).
*/}}
{{- define "kvyard.redisUrl" -}}
{{- if and .Values.redis.enabled .Values.redis.externalUrl -}}
{{- fail "redis: set redis.enabled (a Redis in this chart) or redis.externalUrl, not both" -}}
{{- else if .Values.redis.enabled -}}
{{- printf "redis://%s.%s.svc:%d/0" (include "kvyard.redisName" .) .Release.Namespace (int .Values.redis.port) -}}
{{- else if .Values.redis.externalUrl -}}
{{- .Values.redis.externalUrl -}}
{{- end -}}
{{- end -}}

{{/*
The Serve config (RayService serveConfigV2): one application whose args are the AppConfig in
.Values.app, with redis_url filled in.
*/}}
{{- define "kvyard.serveConfig" -}}
{{- $app := deepCopy .Values.app -}}
{{- $redis := include "kvyard.redisUrl" . -}}
{{- if $redis -}}
{{- $_ := set $app "redis_url" $redis -}}
{{- end -}}
{{- $http := dict "host" "0.0.0.0" "port" 8000 "keep_alive_timeout_s" .Values.serve.keepAliveTimeoutS -}}
{{- $application := dict "name" "kvyard" "route_prefix" "/" "import_path" "kvyard.deployments.builder:build_app" "args" $app -}}
{{- $config := dict "proxy_location" "EveryNode" "http_options" $http "applications" (list $application) -}}
{{- if and .Values.otel.enabled .Values.otel.serveTracing.exporterImportPath -}}
{{- $_ := set $config "tracing_config" (dict "enabled" true "exporter_import_path" .Values.otel.serveTracing.exporterImportPath "sampling_ratio" .Values.otel.serveTracing.samplingRatio) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
Checks that fail the install with a message instead of leaving Serve replicas pending forever.
*/}}
{{- define "kvyard.checks" -}}
{{- $app := .Values.app -}}
{{- $modelPath := dig "model" "path" "" $app -}}
{{- $mount := trimSuffix "/" .Values.models.mountPath -}}
{{- if not (hasPrefix (printf "%s/" $mount) $modelPath) -}}
{{- fail (printf "app.model.path (%q) must lie under models.mountPath (%q): that is where every Ray pod mounts the model volume" $modelPath $mount) -}}
{{- end -}}
{{- if and .Values.models.download.enabled (ne $modelPath (printf "%s/%s" $mount .Values.models.download.dir)) -}}
{{- fail (printf "app.model.path (%q) must be models.mountPath/models.download.dir (%q) when models.download.enabled" $modelPath (printf "%s/%s" $mount .Values.models.download.dir)) -}}
{{- end -}}
{{- $pools := list "decode" -}}
{{- if ne (dig "mode" "disaggregated" $app) "aggregated" -}}
{{- $pools = list "prefill" "decode" -}}
{{- end -}}
{{- range $pool := $pools -}}
{{- $cfg := dig $pool (dict) $app -}}
{{- $group := index $.Values.workerGroups $pool -}}
{{- $replicas := float64 (dig "replicas" 1 $cfg) -}}
{{- $nodes := float64 $group.replicas -}}
{{- $needGpus := mulf $replicas (float64 (dig "num_gpus" 0 $cfg)) -}}
{{- $haveGpus := mulf $nodes (float64 $group.gpus) -}}
{{- if gt $needGpus $haveGpus -}}
{{- fail (printf "app.%s asks for %v GPUs (replicas x num_gpus) but workerGroups.%s has %v (replicas x gpus)" $pool $needGpus $pool $haveGpus) -}}
{{- end -}}
{{- range $name, $per := (dig "resources" (dict) $cfg) -}}
{{- $need := mulf $replicas (float64 $per) -}}
{{- $have := mulf $nodes (float64 (dig $name 0 ($group.customResources | default dict))) -}}
{{- if gt $need $have -}}
{{- fail (printf "app.%s asks for %v of Ray resource %q (replicas x resources) but workerGroups.%s advertises %v (replicas x customResources)" $pool $need $name $pool $have) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* OpenTelemetry export settings as the standard OTEL_* variables. */}}
{{- define "kvyard.otelEnv" -}}
{{- if .Values.otel.enabled }}
- name: KVYARD_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: OTEL_SERVICE_NAME
  value: {{ .Values.otel.serviceName | quote }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .Values.otel.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .Values.otel.protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .Values.otel.tracesSampler | quote }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .Values.otel.tracesSamplerArg | quote }}
{{- $attrs := list (printf "k8s.namespace.name=%s" .Release.Namespace) "k8s.pod.name=$(KVYARD_POD_NAME)" }}
{{- range $k, $v := .Values.otel.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%s" $k $v) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- end }}
{{- end -}}

{{/* Pod pieces shared by the head and worker groups. Call with (dict "root" $ "role" ROLE "group" VALUES). */}}
{{- define "kvyard.modelInit" -}}
{{- $root := .root -}}
{{- if $root.Values.models.download.enabled }}
- name: fetch-model
  image: {{ include "kvyard.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  command:
    - python
    - -c
    - |
      import json, os
      from huggingface_hub import snapshot_download
      patterns = json.loads(os.environ.get("KVYARD_MODEL_PATTERNS") or "null")
      snapshot_download(os.environ["KVYARD_MODEL_REPO"], local_dir=os.environ["KVYARD_MODEL_DIR"], allow_patterns=patterns)
  env:
    - name: KVYARD_MODEL_REPO
      value: {{ $root.Values.models.download.repo | quote }}
    - name: KVYARD_MODEL_DIR
      value: {{ printf "%s/%s" (trimSuffix "/" $root.Values.models.mountPath) $root.Values.models.download.dir | quote }}
    {{- if eq .role "head" }}
    # No engine runs on the head (no custom resources); a frontend there only tokenizes.
    - name: KVYARD_MODEL_PATTERNS
      value: {{ list "*.json" "*.txt" "*.jinja" "*.model" "*.tiktoken" | toJson | quote }}
    {{- end }}
    {{- with $root.Values.models.download.hfTokenSecret }}
    - name: HF_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ . }}
          key: HF_TOKEN
    {{- end }}
  volumeMounts:
    - name: models
      mountPath: {{ $root.Values.models.mountPath }}
{{- end }}
{{- end -}}

{{- define "kvyard.podCommon" -}}
{{- $root := .root -}}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .group.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .group.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .group.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
