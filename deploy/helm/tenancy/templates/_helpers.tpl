{{/* Names and labels shared by every template. */}}
{{- define "tenancy.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tenancy.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tenancy.labels" -}}
{{ include "tenancy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tenancy.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "tenancy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ .Values.serviceAccount.name | default (include "tenancy.fullname" .) }}
{{- else -}}
{{ .Values.serviceAccount.name | default "default" }}
{{- end -}}
{{- end -}}

{{/* The environment variable holding a CloudNativePG cluster's admin password. */}}
{{- define "tenancy.cnpgPasswordEnv" -}}
TENANCY_SERVER_PASSWORD_{{ . | upper | replace "-" "_" }}
{{- end -}}

{{/* The restricted security context, for the registry and the migration Job alike. */}}
{{- define "tenancy.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Environment every container of the release gets: the configuration file, secrets by reference,
CloudNativePG passwords, ZITADEL settings. Nothing secret is inline.
*/}}
{{- define "tenancy.env" -}}
- name: TENANCY_CONFIG
  value: /etc/tenancy/tenancy.toml
- name: TENANCY_LOG_FORMAT
  value: json
# The WAL keeper's spool and point-in-time restores' scratch instances, on the work volume.
- name: TENANCY_WAL_ARCHIVE__SPOOL_DIR
  value: /var/lib/tenancy/wal-spool
- name: TENANCY_WAL_ARCHIVE__SCRATCH_DIR
  value: /var/lib/tenancy/scratch
- name: TENANCY_ENGINE__MASTER_KEY_ENV
  value: TENANCY_MASTER_KEY
- name: TENANCY_REGISTRY__URL
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.registryUrl.name: the Secret holding the registry database URL" .Values.secrets.registryUrl.name }}
      key: {{ .Values.secrets.registryUrl.key }}
- name: TENANCY_MASTER_KEY
  valueFrom:
    secretKeyRef:
      name: {{ required "secrets.masterKey.name: the Secret holding the master key" .Values.secrets.masterKey.name }}
      key: {{ .Values.secrets.masterKey.key }}
{{- with .Values.secrets.previousMasterKey }}
{{- if .name }}
- name: TENANCY_ENGINE__PREVIOUS_MASTER_KEY_ENV
  value: TENANCY_PREVIOUS_MASTER_KEY
- name: TENANCY_PREVIOUS_MASTER_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- range .Values.secrets.serverPasswords }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- if .Values.cnpg.enabled }}
{{- range .Values.cnpg.clusters }}
- name: {{ include "tenancy.cnpgPasswordEnv" .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .adminSecret }}
      key: password
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* envFrom: the ZITADEL settings bootstrap wrote. */}}
{{- define "tenancy.envFrom" -}}
{{- if .Values.zitadel.settingsSecret }}
envFrom:
  - secretRef:
      name: {{ .Values.zitadel.settingsSecret }}
{{- end }}
{{- end -}}

{{/* Mounts shared by the registry and the migration Job. */}}
{{- define "tenancy.volumeMounts" -}}
- name: config
  mountPath: /etc/tenancy/tenancy.toml
  subPath: tenancy.toml
  readOnly: true
- name: work
  mountPath: /var/lib/tenancy
- name: tmp
  mountPath: /tmp
{{- if .Values.zitadel.keysSecret }}
- name: zitadel-keys
  mountPath: {{ .Values.zitadel.keysMountPath }}
  readOnly: true
{{- end }}
{{- if .Values.cnpg.enabled }}
{{- range .Values.cnpg.clusters }}
- name: ca-{{ .name }}
  mountPath: /etc/tenancy/cnpg/{{ .name }}
  readOnly: true
{{- end }}
{{- end }}
{{- end -}}

{{- define "tenancy.volumes" -}}
- name: config
  configMap:
    name: {{ include "tenancy.fullname" . }}
- name: work
  emptyDir:
    sizeLimit: {{ .Values.workDir.sizeLimit }}
- name: tmp
  emptyDir:
    sizeLimit: 256Mi
{{- if .Values.zitadel.keysSecret }}
- name: zitadel-keys
  secret:
    secretName: {{ .Values.zitadel.keysSecret }}
    defaultMode: 0400
{{- end }}
{{- if .Values.cnpg.enabled }}
{{- range .Values.cnpg.clusters }}
# The CA that signs the cluster's server certificate (made by the operator).
- name: ca-{{ .name }}
  secret:
    secretName: {{ .name }}-ca
    items:
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end }}
{{- end -}}
