{{/*
Names, labels, the settings every container gets, the checks that refuse a values file the
daemons would not run with, and the one pod template the four Deployments share.
*/}}

{{- define "pushservice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pushservice.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of a component's objects: <fullname>-<component>. */}}
{{- define "pushservice.componentName" -}}
{{- printf "%s-%s" (include "pushservice.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pushservice.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "pushservice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pushservice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pushservice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of a component: call with (dict "root" $ "component" "sender"). */}}
{{- define "pushservice.componentLabels" -}}
{{ include "pushservice.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "pushservice.componentSelectorLabels" -}}
{{ include "pushservice.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "pushservice.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "pushservice.configMapName" -}}
{{- printf "%s-config" (include "pushservice.fullname" .) }}
{{- end }}

{{/* The Secret every container reads its credentials from: the chart's, or credentials.existingSecret. */}}
{{- define "pushservice.secretName" -}}
{{- if .Values.credentials.existingSecret }}
{{- .Values.credentials.existingSecret }}
{{- else }}
{{- printf "%s-credentials" (include "pushservice.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The Secret holding API_ADMIN_TOKEN for pushapi alone, when the chart makes it; "" when the
token comes from credentials.existingSecret or credentials.secretKeyRefs (or pushapi is off).
*/}}
{{- define "pushservice.apiTokenSecretName" -}}
{{- if and .Values.pushapi.enabled (not .Values.credentials.existingSecret) (not (hasKey .Values.credentials.secretKeyRefs "API_ADMIN_TOKEN")) }}
{{- printf "%s-api-token" (include "pushservice.fullname" .) }}
{{- end }}
{{- end }}

{{- define "pushservice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pushservice.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Settings that are credentials: never in a ConfigMap, only in a Secret (credentials.values,
credentials.existingSecret or credentials.secretKeyRefs). MONGODB_URL carries the database
password; KAFKA_USERNAME travels with its password.
*/}}
{{- define "pushservice.credentialKeys" -}}
MONGODB_URL KAFKA_USERNAME KAFKA_PASSWORD API_ADMIN_TOKEN
{{- end }}

{{/*
Settings the chart sets itself on each container, because the probes, Services and
SENDER_INSTANCE_ID depend on them: never in config or a component's env.
*/}}
{{- define "pushservice.chartOwnedKeys" -}}
METRICS_ADDR API_LISTEN GATEWAY_LISTEN SENDER_INSTANCE_ID KAFKA_CA_LOCATION PUSHSERVICE_ENV_FILE
{{- end }}

{{/* A setting of config, as a string; "" when unset. Call with (list $ "KEY"). */}}
{{- define "pushservice.setting" -}}
{{- $root := index . 0 }}
{{- $value := index $root.Values.config (index . 1) }}
{{- if kindIs "invalid" $value }}{{ else }}{{ toString $value }}{{ end }}
{{- end }}

{{/* A numeric setting of config with the daemons' default. Call with (list $ "KEY" default). */}}
{{- define "pushservice.intSetting" -}}
{{- $text := include "pushservice.setting" (list (index . 0) (index . 1)) }}
{{- if eq $text "" }}{{ index . 2 }}{{ else }}{{ int $text }}{{ end }}
{{- end }}

{{/*
A numeric setting as one daemon sees it: its own env, else config, else the daemons' default.
Call with (list $ "sender" "KEY" default).
*/}}
{{- define "pushservice.daemonIntSetting" -}}
{{- $root := index . 0 }}
{{- $own := index (index $root.Values (index . 1)).env (index . 2) }}
{{- if or (kindIs "invalid" $own) (eq (toString $own) "") }}
{{- include "pushservice.intSetting" (list $root (index . 2) (index . 3)) }}
{{- else }}
{{- int (toString $own) }}
{{- end }}
{{- end }}

{{/* Milliseconds to whole seconds, rounded up. */}}
{{- define "pushservice.msToSecs" -}}
{{- div (add (int .) 999) 1000 }}
{{- end }}

{{/*
The data of the ConfigMap (and of the setup hook's copy): config, without settings left
empty (as in .env, empty means "the default"; an empty variable is refused by some daemons,
e.g. "a value is required for --sender-extra-ca-file").
*/}}
{{- define "pushservice.configData" -}}
{{- range $key, $value := .Values.config }}
{{- if not (or (kindIs "invalid" $value) (eq (toString $value) "")) }}
{{ $key }}: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* The data of the chart's Secret: credentials.values, without empty ones. */}}
{{- define "pushservice.secretData" -}}
{{- $root := . }}
{{- range $key, $value := .Values.credentials.values }}
{{- if and (ne $key "API_ADMIN_TOKEN") (not (hasKey $root.Values.credentials.secretKeyRefs $key)) (not (or (kindIs "invalid" $value) (eq (toString $value) ""))) }}
{{ $key }}: {{ toString $value | b64enc | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Refuses values the daemons or the chart could not run with, naming the key at fault.
Included once, from the ConfigMap.
*/}}
{{- define "pushservice.validate" -}}
{{- $credentials := splitList " " (include "pushservice.credentialKeys" .) }}
{{- $owned := splitList " " (include "pushservice.chartOwnedKeys" .) }}
{{- range $key, $_ := .Values.config }}
{{- if has $key $credentials }}
{{- fail (printf "config.%s is a credential: set it in credentials.values, credentials.existingSecret or credentials.secretKeyRefs, never in a ConfigMap" $key) }}
{{- end }}
{{- if has $key $owned }}
{{- fail (printf "config.%s is set by the chart (ports, probes, instance names, CA mount); remove it from config" $key) }}
{{- end }}
{{- end }}
{{- range $component := list "parser" "sender" "pushapi" "gateway" "setup" }}
{{- range $key, $_ := (index $.Values $component).env }}
{{- if has $key $credentials }}
{{- fail (printf "%s.env.%s is a credential: set it in credentials, not in a container's plain env" $component $key) }}
{{- end }}
{{- if has $key $owned }}
{{- fail (printf "%s.env.%s is set by the chart; remove it" $component $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $key, $_ := .Values.credentials.values }}
{{- if not (has $key $credentials) }}
{{- fail (printf "credentials.values.%s is not a credential (%s): put it in config" $key (include "pushservice.credentialKeys" $)) }}
{{- end }}
{{- end }}
{{- range $key, $ref := .Values.credentials.secretKeyRefs }}
{{- if not (has $key $credentials) }}
{{- fail (printf "credentials.secretKeyRefs.%s is not a credential (%s)" $key (include "pushservice.credentialKeys" $)) }}
{{- end }}
{{- if not (and $ref.name $ref.key) }}
{{- fail (printf "credentials.secretKeyRefs.%s needs name and key" $key) }}
{{- end }}
{{- end }}
{{- if eq (include "pushservice.setting" (list . "KAFKA_BROKERS")) "" }}
{{- fail "config.KAFKA_BROKERS is required: the bootstrap address of your Kafka (the chart does not run one; with Strimzi, <cluster>-kafka-bootstrap:9092)" }}
{{- end }}
{{- if not .Values.credentials.existingSecret }}
{{- if not (or .Values.credentials.values.MONGODB_URL (hasKey .Values.credentials.secretKeyRefs "MONGODB_URL")) }}
{{- fail "credentials.values.MONGODB_URL is required (or credentials.secretKeyRefs.MONGODB_URL, or credentials.existingSecret): mongodb://user:password@host:27017/<database>" }}
{{- end }}
{{- $token := toString (default "" .Values.credentials.values.API_ADMIN_TOKEN) }}
{{- if and $token (lt (len $token) 24) }}
{{- fail "credentials.values.API_ADMIN_TOKEN must be at least 24 characters (openssl rand -hex 24), or empty to have one generated" }}
{{- end }}
{{- if eq (include "pushservice.setting" (list . "KAFKA_SECURITY_ENABLED")) "true" }}
{{- range $key := list "KAFKA_USERNAME" "KAFKA_PASSWORD" }}
{{- if not (or (index $.Values.credentials.values $key) (hasKey $.Values.credentials.secretKeyRefs $key)) }}
{{- fail (printf "config.KAFKA_SECURITY_ENABLED is true: credentials.values.%s (or credentials.secretKeyRefs.%s) is required" $key $key) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- include "pushservice.validateGrace" . }}
{{- include "pushservice.validateAutoscaling" . }}
{{- end }}

{{/*
terminationGracePeriodSeconds must outlast each daemon's drain, computed from the same
settings the daemon reads (defaults as in .env.example), or the kubelet's SIGKILL cuts it:
- parser: fan-outs stop at their next subscriber, wait for Kafka's acknowledgements
  (KAFKA_TIMEOUT_MS), write their checkpoint (MONGODB_TIMEOUT_MS), then a synchronous offset
  commit (KAFKA_TIMEOUT_MS).
- sender: requests in flight get SENDER_SHUTDOWN_GRACE_SECS, the last transaction of outcomes
  and offsets up to KAFKA_TIMEOUT_MS, then the outcome recorder up to 30 s (a bound fixed in
  crates/sender/src/daemon.rs).
- pushapi: the preStop pause, requests in flight up to API_REQUEST_TIMEOUT_MS, then queued
  tracking events written to MongoDB (MONGODB_TIMEOUT_MS).
- gateway: the preStop pause, clients told to reconnect within GATEWAY_SHUTDOWN_SPREAD_MS and
  waited for 5 s more (crates/gateway/src/lib.rs), then the history recorder and presence
  writes (MONGODB_TIMEOUT_MS).
*/}}
{{- define "pushservice.drainSeconds" -}}
{{- $root := .root }}
{{- $c := .component }}
{{- $kafka := include "pushservice.msToSecs" (include "pushservice.daemonIntSetting" (list $root $c "KAFKA_TIMEOUT_MS" 10000)) | int }}
{{- $mongo := include "pushservice.msToSecs" (include "pushservice.daemonIntSetting" (list $root $c "MONGODB_TIMEOUT_MS" 5000)) | int }}
{{- $preStop := int (default 0 (index $root.Values $c).preStopSleepSeconds) }}
{{- if eq $c "parser" }}
{{- add $kafka $mongo $kafka }}
{{- else if eq $c "sender" }}
{{- add (include "pushservice.daemonIntSetting" (list $root $c "SENDER_SHUTDOWN_GRACE_SECS" 30) | int) $kafka 30 }}
{{- else if eq $c "pushapi" }}
{{- add $preStop (include "pushservice.msToSecs" (include "pushservice.daemonIntSetting" (list $root $c "API_REQUEST_TIMEOUT_MS" 30000)) | int) $mongo }}
{{- else if eq $c "gateway" }}
{{- add $preStop (include "pushservice.msToSecs" (include "pushservice.daemonIntSetting" (list $root $c "GATEWAY_SHUTDOWN_SPREAD_MS" 5000)) | int) 5 $mongo }}
{{- end }}
{{- end }}

{{- define "pushservice.validateGrace" -}}
{{- range $component := list "parser" "sender" "pushapi" "gateway" }}
{{- $values := index $.Values $component }}
{{- if $values.enabled }}
{{- $drain := include "pushservice.drainSeconds" (dict "root" $ "component" $component) | int }}
{{- if le (int $values.terminationGracePeriodSeconds) $drain }}
{{- fail (printf "%s.terminationGracePeriodSeconds (%d) must be above the %d s its drain may take with these settings (config and %s.env; see the comment in values.yaml)" $component (int $values.terminationGracePeriodSeconds) $drain $component) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A consumer group cannot use more members than its topic has partitions: the extra ones get
nothing, stay unready and deliver nothing. So maxReplicaCount may not exceed them.
*/}}
{{- define "pushservice.validateAutoscaling" -}}
{{- $push := include "pushservice.intSetting" (list . "TOPIC_PUSH_PARTITIONS" 200) | int }}
{{- $raw := include "pushservice.intSetting" (list . "TOPIC_RAW_PUSH_PARTITIONS" 4) | int }}
{{- with .Values.sender.autoscaling }}
{{- if and $.Values.sender.enabled .enabled (gt (int .maxReplicaCount) $push) }}
{{- fail (printf "sender.autoscaling.maxReplicaCount (%d) is above the push topic's %d partitions (config.TOPIC_PUSH_PARTITIONS): the extra senders would get no partition" (int .maxReplicaCount) $push) }}
{{- end }}
{{- end }}
{{- with .Values.parser.autoscaling }}
{{- if and $.Values.parser.enabled .enabled (gt (int .maxReplicaCount) $raw) }}
{{- fail (printf "parser.autoscaling.maxReplicaCount (%d) is above the raw-push topic's %d partitions (config.TOPIC_RAW_PUSH_PARTITIONS): the extra parsers would get no partition" (int .maxReplicaCount) $raw) }}
{{- end }}
{{- end }}
{{- if and .Values.sender.enabled (not .Values.sender.autoscaling.enabled) (gt (int .Values.sender.replicaCount) $push) }}
{{- fail (printf "sender.replicaCount (%d) is above the push topic's %d partitions" (int .Values.sender.replicaCount) $push) }}
{{- end }}
{{- if and .Values.parser.enabled (not .Values.parser.autoscaling.enabled) (gt (int .Values.parser.replicaCount) $raw) }}
{{- fail (printf "parser.replicaCount (%d) is above the raw-push topic's %d partitions" (int .Values.parser.replicaCount) $raw) }}
{{- end }}
{{- if and .Values.gateway.enabled .Values.gateway.autoscaling.enabled (not .Values.gateway.autoscaling.prometheus.serverAddress) }}
{{- fail "gateway.autoscaling.prometheus.serverAddress is required: the Prometheus that scrapes the gateways' /metrics (its connection gauge is the scaling signal)" }}
{{- end }}
{{- end }}

{{/*
What every container reads: the ConfigMap, then the credentials Secret (envFrom), then single
credentials from other Secrets (env wins over envFrom). Call with (dict "root" $ "configMap"
name "secret" name).
*/}}
{{- define "pushservice.envFrom" -}}
- configMapRef:
    name: {{ .configMap }}
{{- if .secret }}
- secretRef:
    name: {{ .secret }}
{{- end }}
{{- end }}

{{/* Call with (dict "root" $ "component" name): API_ADMIN_TOKEN goes to pushapi alone. */}}
{{- define "pushservice.credentialEnv" -}}
{{- $component := .component }}
{{- with .root }}
{{- range $key, $ref := .Values.credentials.secretKeyRefs }}
{{- if or (ne $key "API_ADMIN_TOKEN") (eq $component "pushapi") }}
- name: {{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.name }}
      key: {{ $ref.key }}
{{- end }}
{{- end }}
{{- if .Values.kafkaCA.secretName }}
- name: KAFKA_CA_LOCATION
  value: /etc/pushservice/kafka-ca/{{ .Values.kafkaCA.key }}
{{- end }}
{{- end }}
{{- end }}

{{/* A component's own env (plain values; credentials are refused by pushservice.validate). */}}
{{- define "pushservice.componentEnv" -}}
{{- range $key, $value := .env }}
{{- if not (or (kindIs "invalid" $value) (eq (toString $value) "")) }}
- name: {{ $key }}
  value: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "pushservice.volumeMounts" -}}
{{- if .Values.kafkaCA.secretName }}
- name: kafka-ca
  mountPath: /etc/pushservice/kafka-ca
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "pushservice.volumes" -}}
{{- if .Values.kafkaCA.secretName }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafkaCA.secretName }}
    items:
      - key: {{ .Values.kafkaCA.key }}
        path: {{ .Values.kafkaCA.key }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The Deployment of one daemon. Call with (dict "root" $ "component" "sender" "command" list
"ports" list-of-(name, port) "ownEnv" list-of-env-entries "probePort" name "readyPort" name
"metricsPort" number).
*/}}
{{- define "pushservice.deployment" -}}
{{- $root := .root }}
{{- $values := index $root.Values .component }}
{{- $ctx := dict "root" $root "component" .component }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "pushservice.componentName" $ctx }}
  labels:
    {{- include "pushservice.componentLabels" $ctx | nindent 4 }}
spec:
  {{- /* Under an autoscaler the replica count is its to set; a value here would reset it at every upgrade. */}}
  {{- if not $values.autoscaling.enabled }}
  replicas: {{ $values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- with $values.strategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "pushservice.componentSelectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "pushservice.componentSelectorLabels" $ctx | nindent 8 }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        # A changed setting restarts the pods (they read their environment once, at start).
        checksum/config: {{ include "pushservice.configData" $root | sha256sum }}
        {{- if not $root.Values.credentials.existingSecret }}
        checksum/credentials: {{ printf "%s%s" (include "pushservice.secretData" $root) (toString (default "" $root.Values.credentials.values.API_ADMIN_TOKEN)) | sha256sum }}
        {{- end }}
        {{- if $root.Values.metrics.podAnnotations }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .metricsPort | quote }}
        prometheus.io/path: /metrics
        {{- end }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "pushservice.serviceAccountName" $root }}
      # The daemons never call the Kubernetes API.
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      containers:
        - name: {{ .component }}
          image: {{ include "pushservice.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command:
            {{- toYaml .command | nindent 12 }}
          ports:
            {{- range .ports }}
            - name: {{ .name }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
          envFrom:
            {{- include "pushservice.envFrom" (dict "configMap" (include "pushservice.configMapName" $root) "secret" (include "pushservice.secretName" $root)) | nindent 12 }}
          env:
            {{- with include "pushservice.credentialEnv" $ctx | trim }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with .ownEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with include "pushservice.componentEnv" $values | trim }}
            {{- . | nindent 12 }}
            {{- end }}
          {{- /* Nothing answers before the daemon connected to MongoDB (pushapi, gateway) or parsed its settings: a generous start-up window, then a restart after 3 missed /healthz in a row. */}}
          startupProbe:
            httpGet:
              path: /healthz
              port: {{ .probePort }}
            periodSeconds: {{ $root.Values.probes.startup.periodSeconds }}
            failureThreshold: {{ $root.Values.probes.startup.failureThreshold }}
            timeoutSeconds: {{ $root.Values.probes.timeoutSeconds }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: {{ .probePort }}
            periodSeconds: {{ $root.Values.probes.liveness.periodSeconds }}
            failureThreshold: {{ $root.Values.probes.liveness.failureThreshold }}
            timeoutSeconds: {{ $root.Values.probes.timeoutSeconds }}
          readinessProbe:
            httpGet:
              path: /readyz
              port: {{ .readyPort }}
            periodSeconds: {{ $root.Values.probes.readiness.periodSeconds }}
            failureThreshold: {{ $root.Values.probes.readiness.failureThreshold }}
            timeoutSeconds: {{ $root.Values.probes.timeoutSeconds }}
          {{- if $values.preStopSleepSeconds }}
          lifecycle:
            # Endpoints and load balancers drop a terminating pod a moment after it is marked
            # so; until then new requests still arrive. The pause keeps serving them, then
            # SIGTERM starts the drain. (exec, not the sleep action: that needs 1.32+.)
            preStop:
              exec:
                command: ["sleep", {{ $values.preStopSleepSeconds | quote }}]
          {{- end }}
          resources:
            {{- toYaml $values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          {{- with include "pushservice.volumeMounts" $root | trim }}
          volumeMounts:
            {{- . | nindent 12 }}
          {{- end }}
      {{- with include "pushservice.volumes" $root | trim }}
      volumes:
        {{- . | nindent 8 }}
      {{- end }}
      {{- with $values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if or $root.Values.spreadAcrossNodes $values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- if $root.Values.spreadAcrossNodes }}
        # Replicas on different nodes where the scheduler can: one node lost takes few.
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "pushservice.componentSelectorLabels" $ctx | nindent 14 }}
        {{- end }}
        {{- with $values.topologySpreadConstraints }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
{{- end }}
