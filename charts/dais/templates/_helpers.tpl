{{/* Names */}}
{{- define "dais.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dais.fullname" -}}
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

{{/* "<fullname>-<component>": call with (dict "root" $ "component" "api") */}}
{{- define "dais.componentName" -}}
{{- printf "%s-%s" (include "dais.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dais.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "dais.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dais
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "api") */}}
{{- define "dais.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dais.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "dais.componentLabels" -}}
{{ include "dais.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "dais.image" -}}
{{- printf "%s:%s" .Values.global.image.repository (default .Chart.AppVersion .Values.global.image.tag) -}}
{{- end -}}

{{- define "dais.secretName" -}}
{{- include "dais.fullname" . -}}
{{- end -}}

{{- define "dais.apiUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "dais.componentName" (dict "root" . "component" "api")) .Release.Namespace (int .Values.api.service.port) -}}
{{- end -}}

{{- define "dais.gatewayUrl" -}}
{{- if .Values.config.gatewayUrl -}}
{{- .Values.config.gatewayUrl -}}
{{- else -}}
{{- printf "http://%s.%s.svc:%d" (include "dais.componentName" (dict "root" . "component" "gateway")) .Release.Namespace (int .Values.gateway.service.port) -}}
{{- end -}}
{{- end -}}

{{/* The Secret and key of one secret setting: (dict "root" $ "value" .Values.database "key" "database-url") */}}
{{- define "dais.secretRef" -}}
secretKeyRef:
  name: {{ .value.existingSecret | default (include "dais.secretName" .root) }}
  key: {{ if .value.existingSecret }}{{ .value.existingSecretKey }}{{ else }}{{ .key }}{{ end }}
{{- end -}}

{{/* Environment of every Dais container: non-secret settings from the ConfigMap, secrets by reference. */}}
{{- define "dais.env" -}}
- name: DAIS_DATABASE_URL
  valueFrom:
    {{- include "dais.secretRef" (dict "root" . "value" .Values.database "key" "database-url") | nindent 4 }}
- name: DAIS_SECRET_KEY
  valueFrom:
    {{- include "dais.secretRef" (dict "root" . "value" .Values.secretKey "key" "secret-key") | nindent 4 }}
- name: DAIS_ADMIN_TOKEN
  valueFrom:
    {{- include "dais.secretRef" (dict "root" . "value" .Values.adminToken "key" "admin-token") | nindent 4 }}
{{- end -}}

{{- define "dais.envFrom" -}}
- configMapRef:
    name: {{ include "dais.componentName" (dict "root" . "component" "config") }}
{{- end -}}

{{/* Pod-level settings shared by every component: (dict "root" $ "values" .Values.api) */}}
{{- define "dais.podScheduling" -}}
{{- with .root.Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  runAsNonRoot: true
  fsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
{{- with (.values.nodeSelector | default .root.Values.global.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (.values.tolerations | default .root.Values.global.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with (.values.affinity | default .root.Values.global.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "dais.podMetadata" -}}
labels:
  {{- include "dais.selectorLabels" . | nindent 2 }}
  {{- with .root.Values.global.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  checksum/config: {{ include (print .root.Template.BasePath "/config.yaml") .root | sha256sum }}
  {{- with .root.Values.global.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* Volumes every Dais container gets: a writable /tmp (the root filesystem is read-only) and the catalogs. */}}
{{- define "dais.volumes" -}}
- name: tmp
  emptyDir: {}
- name: catalogs
  configMap:
    name: {{ include "dais.componentName" (dict "root" . "component" "catalogs") }}
    optional: true
{{- end -}}

{{- define "dais.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: catalogs
  mountPath: /etc/dais
  readOnly: true
{{- end -}}

{{/*
One component's Deployment: (dict "root" $ "component" "api" "values" .Values.api "args" (list ...)
"ports" (list (dict "name" "http" "port" 8000)) "probePort" "http" "readyPath" "/readyz" "serviceAccount" true
"drainSeconds" 30). A component that serves traffic (drainSeconds set) waits global.preStopSeconds in a preStop
hook before its SIGTERM, while Services stop sending it connections, and then drains for drainSeconds; its grace
period covers both and 10 s to exit.
*/}}
{{- define "dais.deployment" -}}
{{- $root := .root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "dais.componentName" . }}
  labels:
    {{- include "dais.componentLabels" . | nindent 4 }}
spec:
  replicas: {{ .values.replicas }}
  revisionHistoryLimit: 3
  selector:
    matchLabels:
      {{- include "dais.selectorLabels" . | nindent 6 }}
  template:
    metadata:
      {{- include "dais.podMetadata" . | nindent 6 }}
    spec:
      serviceAccountName: {{ include "dais.componentName" . }}
      automountServiceAccountToken: {{ .kubeAccess | default false }}
      {{- include "dais.podScheduling" . | nindent 6 }}
      {{- if hasKey . "drainSeconds" }}
      terminationGracePeriodSeconds: {{ add $root.Values.global.preStopSeconds .drainSeconds 10 }}
      {{- else }}
      terminationGracePeriodSeconds: 30
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "dais.image" $root }}
          imagePullPolicy: {{ $root.Values.global.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          {{- if and (hasKey . "drainSeconds") $root.Values.global.preStopSeconds }}
          lifecycle:
            preStop:
              sleep:
                seconds: {{ $root.Values.global.preStopSeconds }}
          {{- end }}
          env:
            {{- include "dais.env" $root | nindent 12 }}
          envFrom:
            {{- include "dais.envFrom" $root | nindent 12 }}
          ports:
            {{- range .ports }}
            - name: {{ .name }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
          startupProbe:
            httpGet: {path: /healthz, port: {{ .probePort }}}
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            httpGet: {path: /healthz, port: {{ .probePort }}}
            periodSeconds: 10
            failureThreshold: 3
          readinessProbe:
            httpGet: {path: {{ .readyPath | default "/healthz" }}, port: {{ .probePort }}}
            periodSeconds: 5
            failureThreshold: 2
          resources:
            {{- toYaml .values.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "dais.volumeMounts" $root | nindent 12 }}
      volumes:
        {{- include "dais.volumes" $root | nindent 8 }}
{{- end -}}

{{- define "dais.serviceAccount" -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "dais.componentName" . }}
  labels:
    {{- include "dais.componentLabels" . | nindent 4 }}
automountServiceAccountToken: false
{{- end -}}

{{- define "dais.pdb" -}}
{{- if .values.pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "dais.componentName" . }}
  labels:
    {{- include "dais.componentLabels" . | nindent 4 }}
spec:
  minAvailable: {{ .values.pdb.minAvailable }}
  selector:
    matchLabels:
      {{- include "dais.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}
