{{- define "userattrs.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "userattrs.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "userattrs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "userattrs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "userattrs.labels" -}}
{{ include "userattrs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "userattrs.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "userattrs.secretName" -}}
{{- .Values.existingSecret | default (include "userattrs.fullname" .) -}}
{{- end -}}

{{- define "userattrs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "userattrs.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The replicas the store allows: one writer of the SQLite file. */}}
{{- define "userattrs.replicas" -}}
{{- if eq .Values.store "sqlite" -}}1{{- else -}}{{ .Values.replicaCount }}{{- end -}}
{{- end -}}

{{/* The store's flags and the environment that carries its secrets, shared by the pods and the migration Job. */}}
{{- define "userattrs.storeArgs" -}}
{{- if eq .Values.store "sqlite" }}
- --data-dir=/data
{{- else if eq .Values.store "keycloak" }}
- --store=keycloak
- --keycloak-url={{ required "keycloak.url is required with store keycloak" .Values.keycloak.url }}
- --keycloak-realm={{ required "keycloak.realm is required with store keycloak" .Values.keycloak.realm }}
- --keycloak-client-id={{ required "keycloak.clientId is required with store keycloak" .Values.keycloak.clientId }}
{{- end }}
{{- end -}}

{{- define "userattrs.storeEnv" -}}
{{- if eq .Values.store "postgres" }}
- name: USERATTRS_STORE
  valueFrom:
    secretKeyRef:
      name: {{ include "userattrs.secretName" . }}
      key: database-url
{{- else if eq .Values.store "keycloak" }}
- name: USERATTRS_KEYCLOAK_CLIENT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "userattrs.secretName" . }}
      key: keycloak-client-secret
{{- end }}
{{- end -}}

{{- define "userattrs.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "userattrs.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "userattrs.podTemplate" -}}
metadata:
  labels:
    {{- include "userattrs.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if or .Values.podAnnotations .Values.attributePolicy }}
  annotations:
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- if .Values.attributePolicy }}
    # A changed policy rolls the pods, which read it at start.
    checksum/attribute-policy: {{ toYaml .Values.attributePolicy | sha256sum }}
    {{- end }}
  {{- end }}
spec:
  serviceAccountName: {{ include "userattrs.serviceAccountName" . }}
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- include "userattrs.podSecurityContext" . | nindent 4 }}
  # The preStop wait, then the drain, then a margin for the process to exit.
  terminationGracePeriodSeconds: {{ add .Values.shutdown.delaySeconds .Values.shutdown.timeoutSeconds 5 }}
  containers:
    - name: userattrs
      image: {{ include "userattrs.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - serve
        - --addr=:8080
        # The preStop hook makes the wait before the drain.
        - --shutdown-delay=0s
        - --shutdown-timeout={{ .Values.shutdown.timeoutSeconds }}s
        {{- include "userattrs.storeArgs" . | nindent 8 }}
        {{- if .Values.migration.job }}
        - --auto-migrate=false
        {{- end }}
        {{- with .Values.oidc.issuer }}
        - --oidc-issuer={{ . }}
        {{- end }}
        {{- with .Values.oidc.audience }}
        - --oidc-audience={{ . }}
        {{- end }}
        {{- with .Values.events.webhookUrl }}
        - --events-webhook-url={{ . }}
        {{- end }}
        {{- with .Values.events.natsUrl }}
        - --events-nats-url={{ . }}
        {{- end }}
        {{- if .Values.tracing.trustIncomingTrace }}
        - --trust-incoming-trace
        {{- end }}
        {{- if .Values.attributePolicy }}
        - --attribute-policy=/etc/userattrs/attribute-policy.yaml
        {{- end }}
        {{- with .Values.extraArgs }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      env:
        {{- include "userattrs.storeEnv" . | nindent 8 }}
        {{- if .Values.events.webhookUrl }}
        - name: USERATTRS_EVENTS_WEBHOOK_SECRET
          valueFrom:
            secretKeyRef:
              name: {{ include "userattrs.secretName" . }}
              key: webhook-secret
        {{- end }}
        - name: USERATTRS_INTROSPECTION_CLIENT_SECRET
          valueFrom:
            secretKeyRef:
              name: {{ include "userattrs.secretName" . }}
              key: introspection-client-secret
              optional: true
        {{- with .Values.tracing.otlpEndpoint }}
        - name: OTEL_EXPORTER_OTLP_ENDPOINT
          value: {{ . | quote }}
        - name: OTEL_SERVICE_NAME
          value: {{ include "userattrs.fullname" $ | quote }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http
          containerPort: 8080
          protocol: TCP
      # Started once the listener answers; schema migrations at start
      # may take a while.
      startupProbe:
        httpGet: {path: /health/liveness, port: http}
        periodSeconds: 2
        failureThreshold: 60
      livenessProbe:
        httpGet: {path: /health/liveness, port: http}
        periodSeconds: 10
        timeoutSeconds: 3
        failureThreshold: 3
      readinessProbe:
        httpGet: {path: /health/readiness, port: http}
        periodSeconds: 5
        timeoutSeconds: 4
        failureThreshold: 2
      lifecycle:
        preStop:
          sleep:
            seconds: {{ .Values.shutdown.delaySeconds }}
      securityContext:
        {{- include "userattrs.containerSecurityContext" . | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if eq .Values.store "sqlite" }}
        - name: data
          mountPath: /data
        {{- end }}
        {{- if .Values.attributePolicy }}
        - name: attribute-policy
          mountPath: /etc/userattrs
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if .Values.attributePolicy }}
    - name: attribute-policy
      configMap:
        name: {{ include "userattrs.fullname" . }}-attribute-policy
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
