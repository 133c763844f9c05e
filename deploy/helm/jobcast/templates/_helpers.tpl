{{/*
Names, labels and the pieces every tier shares.
*/}}

{{- define "jobcast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* <release>-jobcast, or the release name alone when it already contains the chart name. */}}
{{- define "jobcast.fullname" -}}
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

{{/* Name of one component: (dict "ctx" $ "component" "web") -> <fullname>-web (at most 63 characters). */}}
{{- define "jobcast.componentName" -}}
{{- printf "%s-%s" (include "jobcast.fullname" .ctx | trunc (int (sub 62 (len .component)))) .component | trimSuffix "-" -}}
{{- end -}}

{{- define "jobcast.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object: (dict "ctx" $ "component" "web"); component may be empty. */}}
{{- define "jobcast.labels" -}}
helm.sh/chart: {{ include "jobcast.chart" .ctx }}
{{ include "jobcast.selectorLabels" . }}
app.kubernetes.io/version: {{ (include "jobcast.imageTag" .ctx) | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: jobcast
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels a selector matches: name, instance and (when given) component. Never change these: selectors are immutable. */}}
{{- define "jobcast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "jobcast.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/* commonAnnotations merged with more: (dict "ctx" $ "annotations" $more), as a metadata.annotations block
(indented for metadata); nothing when both are empty. Call it as {{- include ... }}. */}}
{{- define "jobcast.annotations" -}}
{{- $all := merge (deepCopy (default dict .annotations)) (deepCopy (default dict .ctx.Values.commonAnnotations)) -}}
{{- if $all }}
  annotations:
    {{- toYaml $all | nindent 4 }}
{{- end }}
{{- end -}}

{{- define "jobcast.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "jobcast.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "jobcast.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/* registry/repository:tag or registry/repository@digest. */}}
{{- define "jobcast.image" -}}
{{- $repo := .Values.image.repository -}}
{{- if .Values.image.registry -}}{{- $repo = printf "%s/%s" .Values.image.registry $repo -}}{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $repo .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (include "jobcast.imageTag" .) -}}
{{- end -}}
{{- end -}}

{{- define "jobcast.staticImage" -}}
{{- $img := .Values.web.static.image -}}
{{- $repo := $img.repository -}}
{{- if $img.registry -}}{{- $repo = printf "%s/%s" $img.registry $repo -}}{{- end -}}
{{- printf "%s:%s" $repo $img.tag -}}
{{- end -}}

{{/* Secret: the existing one, or the rendered <fullname>. */}}
{{- define "jobcast.secretName" -}}
{{- default (include "jobcast.fullname" .) .Values.secret.existingSecret -}}
{{- end -}}

{{- define "jobcast.configMapName" -}}
{{- include "jobcast.componentName" (dict "ctx" . "component" "config") -}}
{{- end -}}

{{/*
Django's SECRET_KEY: the value given, else the one already in the cluster (lookup; empty
under `helm template`), else 50 random characters. Memoised in .Values so the Secret, its
hook-scoped copy and the checksum annotations of one render all see the same key.
*/}}
{{- define "jobcast.secretKey" -}}
{{- if not (hasKey .Values.secret "__resolvedSecretKey") -}}
{{- $key := .Values.secret.secretKey -}}
{{- if not $key -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "jobcast.fullname" .) -}}
{{- if and $existing $existing.data (hasKey $existing.data .Values.secret.keys.secretKey) -}}
{{- $key = index $existing.data .Values.secret.keys.secretKey | b64dec -}}
{{- else -}}
{{- $key = randAlphaNum 50 -}}
{{- end -}}
{{- end -}}
{{- $_ := set .Values.secret "__resolvedSecretKey" $key -}}
{{- end -}}
{{- index .Values.secret "__resolvedSecretKey" -}}
{{- end -}}

{{/* The Secret's data (base64), shared by the Secret and its hook-scoped copy. */}}
{{- define "jobcast.secretData" -}}
{{- $keys := .Values.secret.keys -}}
{{ $keys.secretKey }}: {{ include "jobcast.secretKey" . | b64enc | quote }}
{{ $keys.databaseUrl }}: {{ required "externalDatabase.url is required (a PostgreSQL URL), unless secret.existingSecret names a Secret that holds it" .Values.externalDatabase.url | b64enc | quote }}
{{ $keys.redisUrl }}: {{ required "externalRedis.url is required (a Redis URL), unless secret.existingSecret names a Secret that holds it" .Values.externalRedis.url | b64enc | quote }}
{{- with .Values.streamTokens.jwtSecret }}
{{ $keys.jwtSecret }}: {{ . | b64enc | quote }}
{{- end }}
{{- end -}}

{{/* Host names of the Ingress and the HTTPRoute. */}}
{{- define "jobcast.publicHosts" -}}
{{- $hosts := list -}}
{{- if .Values.ingress.enabled -}}{{- $hosts = concat $hosts .Values.ingress.hosts -}}{{- end -}}
{{- if .Values.httpRoute.enabled -}}{{- $hosts = concat $hosts .Values.httpRoute.hostnames -}}{{- end -}}
{{- $hosts | uniq | join "," -}}
{{- end -}}

{{/* https:// origins of the TLS hosts of the Ingress and of the HTTPRoute's host names. */}}
{{- define "jobcast.defaultCsrfOrigins" -}}
{{- $origins := list -}}
{{- if .Values.ingress.enabled -}}
{{- range .Values.ingress.tls -}}{{- range .hosts -}}{{- $origins = append $origins (printf "https://%s" .) -}}{{- end -}}{{- end -}}
{{- end -}}
{{- if .Values.httpRoute.enabled -}}
{{- range .Values.httpRoute.hostnames -}}{{- $origins = append $origins (printf "https://%s" .) -}}{{- end -}}
{{- end -}}
{{- $origins | uniq | join "," -}}
{{- end -}}

{{/* The ConfigMap's data, shared by the ConfigMap and its hook-scoped copy. */}}
{{- define "jobcast.configData" -}}
{{- $c := .Values.config -}}
{{- $data := dict -}}
{{- range $name, $value := $c.env -}}{{- $_ := set $data $name (toString $value) -}}{{- end -}}
{{- $allowed := join "," $c.allowedHosts | default (include "jobcast.publicHosts" .) | default "127.0.0.1,localhost" -}}
{{- $_ := set $data "ALLOWED_HOSTS" $allowed -}}
{{- $_ := set $data "CSRF_TRUSTED_ORIGINS" (join "," $c.csrfTrustedOrigins | default (include "jobcast.defaultCsrfOrigins" .)) -}}
{{- $_ := set $data "DEBUG" "false" -}}
{{- $_ := set $data "JOBCAST_BIND" "0.0.0.0" -}}
{{- $_ := set $data "JOBCAST_FORWARDED_ALLOW_IPS" $c.forwardedAllowIps -}}
{{- $_ := set $data "JOBCAST_LOG_LEVEL" $c.logLevel -}}
{{- $_ := set $data "JOBCAST_KIND_MODULES" $c.kindModules -}}
{{- $_ := set $data "JOBCAST_MAX_BODY_BYTES" (toString (int $c.maxBodyBytes)) -}}
{{- $_ := set $data "JOBCAST_PROXY_WS_TIMEOUT" (toString (int $c.proxyWsTimeoutSeconds)) -}}
{{- $tokens := .Values.streamTokens -}}
{{- $_ := set $data "JOBCAST_JWT_AUDIENCE" $tokens.audience -}}
{{- with $tokens.jwtPublicKey }}{{- $_ := set $data "JOBCAST_JWT_PUBLIC_KEY" . -}}{{- end -}}
{{- with $tokens.issuer }}{{- $_ := set $data "JOBCAST_JWT_ISSUER" . -}}{{- end -}}
{{- toYaml $data -}}
{{- end -}}

{{/* env of every jobcast container: the three secrets by secretKeyRef, and the optional stream-token secret. */}}
{{- define "jobcast.secretEnv" -}}
- name: SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .ctx.Values.secret.keys.secretKey }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .ctx.Values.secret.keys.databaseUrl }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .ctx.Values.secret.keys.redisUrl }}
- name: JOBCAST_JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .ctx.Values.secret.keys.jwtSecret }}
      optional: true
{{- end -}}

{{/* Checksums that roll the pods when their configuration changes. */}}
{{- define "jobcast.checksums" -}}
checksum/config: {{ include "jobcast.configData" . | sha256sum }}
{{- if .Values.secret.existingSecret }}
checksum/secret: {{ printf "existing:%s" .Values.secret.existingSecret | sha256sum }}
{{- else }}
checksum/secret: {{ include "jobcast.secretData" . | sha256sum }}
{{- end }}
{{- end -}}

{{/* Terminations periods, derived from the same values the containers get as env vars. */}}
{{- define "jobcast.ws.terminationGracePeriodSeconds" -}}
{{- add (int .Values.ws.preStopSleepSeconds) (int .Values.ws.drainSeconds) (int .Values.ws.shutdownGraceSeconds) (int .Values.ws.terminationMarginSeconds) -}}
{{- end -}}

{{/* gunicorn's graceful_timeout is 25 s in services/web/gunicorn_conf.py (a test keeps the two equal). */}}
{{- define "jobcast.web.gracefulTimeoutSeconds" -}}25{{- end -}}

{{- define "jobcast.web.terminationGracePeriodSeconds" -}}
{{- add (int .Values.web.preStopSleepSeconds) (int (include "jobcast.web.gracefulTimeoutSeconds" .)) (int .Values.web.terminationMarginSeconds) -}}
{{- end -}}

{{- define "jobcast.worker.terminationGracePeriodSeconds" -}}
{{- add (int .Values.worker.shutdownSeconds) (int .Values.worker.terminationMarginSeconds) -}}
{{- end -}}

{{/* An HTTP probe: (dict "probe" $values "path" "/healthz" "port" "http"). */}}
{{- define "jobcast.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: {{ .port }}
initialDelaySeconds: {{ .probe.initialDelaySeconds }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
successThreshold: {{ .probe.successThreshold }}
{{- end -}}

{{/* Topology spread constraints of a tier: (dict "ctx" $ "component" "web" "tier" $values). */}}
{{- define "jobcast.topologySpread" -}}
{{- if .tier.topologySpreadConstraints -}}
{{ toYaml .tier.topologySpreadConstraints }}
{{- else if .ctx.Values.topologySpread.enabled -}}
{{- $outer := . -}}
{{- range $i, $key := .ctx.Values.topologySpread.topologyKeys }}
{{- if $i }}{{ "\n" }}{{ end -}}
- maxSkew: {{ $outer.ctx.Values.topologySpread.maxSkew }}
  topologyKey: {{ $key }}
  whenUnsatisfiable: {{ $outer.ctx.Values.topologySpread.whenUnsatisfiable }}
  labelSelector:
    matchLabels:
      {{- include "jobcast.selectorLabels" $outer | nindent 6 }}
  matchLabelKeys:
    - pod-template-hash
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The init container that waits until every migration is applied. */}}
{{- define "jobcast.waitForMigrations" -}}
{{- if and .Values.migrations.enabled .Values.migrations.waitForMigrations.enabled -}}
- name: wait-for-migrations
  image: {{ include "jobcast.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command:
    - sh
    - -c
    - |
      until jobcast manage migrate --check >/dev/null 2>&1; do
        echo "waiting for the database migrations to be applied"
        sleep {{ int .Values.migrations.waitForMigrations.intervalSeconds }}
      done
  envFrom:
    - configMapRef:
        name: {{ include "jobcast.configMapName" . }}
  env:
    {{- include "jobcast.secretEnv" (dict "ctx" . "secretName" (include "jobcast.secretName" .)) | nindent 4 }}
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  resources:
    {{- toYaml .Values.migrations.waitForMigrations.resources | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- end -}}

{{/* Pod-level settings every tier shares. */}}
{{- define "jobcast.podCommon" -}}
serviceAccountName: {{ include "jobcast.serviceAccountName" .ctx }}
automountServiceAccountToken: {{ .ctx.Values.serviceAccount.automountServiceAccountToken }}
{{- /* Service links would set e.g. JOBCAST_WEB_PORT=tcp://10.0.0.1:8001 in every pod of a release
named "jobcast" (Service jobcast-web): jobcast reads that variable as its port and fails to start. */}}
enableServiceLinks: false
{{- with .ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .ctx.Values.podSecurityContext | nindent 2 }}
{{- with .tier.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .tier.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tier.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tier.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $spread := include "jobcast.topologySpread" . }}
{{- if $spread }}
topologySpreadConstraints:
  {{- $spread | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A PodDisruptionBudget's budget: minAvailable when set, else maxUnavailable. */}}
{{- define "jobcast.pdbBudget" -}}
{{- if not (eq (toString .minAvailable) "") -}}
minAvailable: {{ .minAvailable }}
{{- else -}}
maxUnavailable: {{ .maxUnavailable }}
{{- end -}}
{{- end -}}
