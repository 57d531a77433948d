{{/*
Every service the chart can run and what its code needs. These are facts about the code, not
settings, so they live here rather than in values.yaml: a new service gets a line here and a
section in values.yaml, and every template picks it up.
  postgres  owns a database: gets ConnectionStrings__Postgres and a migration hook Job
  rabbitmq  ConnectionStrings__RabbitMq (MassTransit)
  redis     ConnectionStrings__Redis
  calls     the services whose gRPC API it calls itself (not through the gateway): gets
            ConnectionStrings__<Service> (their gRPC address), and the network policies let it in
*/}}
{{- define "crm.catalog" -}}
contacts:     { postgres: true,  rabbitmq: true,  redis: false, calls: [] }
delivery:     { postgres: true,  rabbitmq: true,  redis: true,  calls: [] }
segmentation: { postgres: true,  rabbitmq: true,  redis: false, calls: [contacts] }
campaigns:    { postgres: true,  rabbitmq: true,  redis: false, calls: [] }
gateway:      { postgres: false, rabbitmq: false, redis: true,  calls: [] }
{{- end }}

{{- define "crm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The object name prefix. 42 characters leave room for "-segmentation-migrate": a Job's name
     becomes a label value on its pods, and those stop at 63. */}}
{{- define "crm.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 42 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 42 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 42 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "crm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels never change after install (a Deployment's selector is immutable), so no version here. */}}
{{- define "crm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "crm.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/* Call with (dict "root" $ "component" "contacts"); component may be left out for shared objects. */}}
{{- define "crm.labels" -}}
{{ include "crm.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: crm-platform
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ include "crm.chart" .root }}
{{- end }}

{{- define "crm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "crm.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "crm.credentialsSecretName" -}}
{{- include "crm.fullname" . }}-credentials
{{- end }}

{{/*
Deep-merges .src into .dst in place: maps merge key by key, anything else replaces, including
false, 0 and "". Hand-written because sprig's mergeOverwrite has changed how it treats those
"empty" values between Helm versions, and `enabled: false` must always win.
*/}}
{{- define "crm.mergeInto" -}}
{{- $dst := .dst }}
{{- range $key, $value := .src }}
{{- if and (kindIs "map" $value) (kindIs "map" (get $dst $key)) }}
{{- include "crm.mergeInto" (dict "dst" (get $dst $key) "src" $value) }}
{{- else }}
{{- $_ := set $dst $key $value }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The enabled services, each resolved once: a list of dicts with
  name      contacts, delivery, ...
  fullname  the object name, <release>-crm-platform-contacts
  needs     its line of crm.catalog
  values    its section merged over defaults
  image     repository:tag
Templates can only return strings, so the caller passes a dict and reads .services from it:
  {{- $resolved := dict }}{{- include "crm.services" (dict "root" $ "out" $resolved) }}
*/}}
{{- define "crm.services" -}}
{{- $root := .root }}
{{- $services := list }}
{{- range $name, $needs := include "crm.catalog" $root | fromYaml }}
{{- $own := index $root.Values $name | default dict }}
{{- if $own.enabled }}
{{- $values := deepCopy $root.Values.defaults }}
{{- include "crm.mergeInto" (dict "dst" $values "src" (deepCopy $own)) }}
{{- $repository := printf "%s/%s" $root.Values.defaults.image.repository $name }}
{{- with $own.image }}
{{- with .repository }}
{{- $repository = . }}
{{- end }}
{{- end }}
{{- $image := printf "%s:%s" $repository (toString ($values.image.tag | default $root.Chart.AppVersion)) }}
{{- $services = append $services (dict "name" $name "fullname" (printf "%s-%s" (include "crm.fullname" $root) $name) "needs" $needs "values" $values "image" $image) }}
{{- end }}
{{- end }}
{{- $_ := set .out "services" $services }}
{{- end }}

{{/*
The identity-token key pair (ES256) the chart puts in its Secret, as a dict with signingKey (the
private PEM: the gateway's only), keyId and publicKey (every service's). The configured one, else
the one a previous release generated (read back with lookup, so upgrades keep it and tokens stay
valid), else a new one: a P-256 private key, and its public key as a self-signed certificate
(Helm cannot print a bare public key; the services read the key out of the certificate and ignore
the rest). Remembered in .Values for the rest of this render, so that every template that includes
it (Secret, hook Secret, checksum) sees the same pair. Call with the root context; returns YAML.
*/}}
{{- define "crm.tokenKeys" -}}
{{- $tenancy := .Values.tenancy }}
{{- if not $tenancy.resolvedKeys }}
{{- $keys := dict "signingKey" ($tenancy.signingKey | default "") "keyId" ($tenancy.signingKeyId | default "") "publicKey" ($tenancy.publicKey | default "") }}
{{- if $keys.signingKey }}
{{- if not (and $keys.keyId $keys.publicKey) }}
{{- fail "tenancy.signingKey needs tenancy.signingKeyId and tenancy.publicKey (its public key, PEM)" }}
{{- end }}
{{- if not (regexMatch "-----BEGIN (EC )?PRIVATE KEY-----" $keys.signingKey) }}
{{- fail "tenancy.signingKey must be an ECDSA P-256 private key in PEM (\"EC PRIVATE KEY\" or \"PRIVATE KEY\")" }}
{{- end }}
{{- else }}
{{- $previous := get (lookup "v1" "Secret" .Release.Namespace (include "crm.credentialsSecretName" .) | default dict) "data" | default dict }}
{{- $names := $tenancy.secretKeys }}
{{- if hasKey $previous $names.signingKey }}
{{- $keys = dict "signingKey" (get $previous $names.signingKey | b64dec) "keyId" (get $previous $names.signingKeyId | default "" | b64dec) "publicKey" (get $previous $names.publicKey | default "" | b64dec) }}
{{- else }}
{{- $private := genPrivateKey "ecdsa" }}
{{- $certificate := genSelfSignedCertWithKey "crm-platform identity tokens" nil nil 36500 $private }}
{{- $keys = dict "signingKey" $private "keyId" (printf "helm-%s" (sha256sum $certificate.Cert | trunc 12)) "publicKey" $certificate.Cert }}
{{- end }}
{{- end }}
{{- $_ := set $tenancy "resolvedKeys" $keys }}
{{- end }}
{{- toYaml $tenancy.resolvedKeys }}
{{- end }}

{{/*
Contacts' key for the hashes of erased identities: the configured one, else the one a previous release
generated (read back with lookup), else 32 random bytes, base64. Remembered for the rest of the render.
*/}}
{{- define "crm.suppressionKey" -}}
{{- $tenancy := .Values.tenancy }}
{{- if not $tenancy.resolvedSuppressionKey }}
{{- $key := $tenancy.suppressionKey | default "" }}
{{- if not $key }}
{{- $previous := get (lookup "v1" "Secret" .Release.Namespace (include "crm.credentialsSecretName" .) | default dict) "data" | default dict }}
{{- $key = get $previous $tenancy.secretKeys.suppressionKey | default "" | b64dec }}
{{- end }}
{{- $_ := set $tenancy "resolvedSuppressionKey" ($key | default (randBytes 32)) }}
{{- end }}
{{- $tenancy.resolvedSuppressionKey }}
{{- end }}

{{- define "crm.deliveryKeySecretName" -}}
{{- include "crm.fullname" . }}-delivery-key
{{- end }}

{{/*
Delivery's provider-secrets key (delivery.providerSecrets), the same way: the configured one, else
the one already in the cluster (read back with lookup from its own Secret, or from the credentials
Secret where chart 0.1.0 kept it), else, only while delivery is enabled, a new random one (the base64
of 32 random bytes). Unlike the signing key it cannot be replaced without losing data, so a key already
in the cluster is carried over even while delivery is disabled, and enabling it again finds the same
key. Empty when delivery is off and there is no key yet. Remembered in .Values like the signing key.
*/}}
{{- define "crm.deliverySecretKey" -}}
{{- $secrets := .Values.delivery.providerSecrets }}
{{- if not (hasKey $secrets "resolvedKey") }}
{{- $key := $secrets.encryptionKey }}
{{- if $key }}
{{- if not (regexMatch "^[A-Za-z0-9+/]{43}=$" $key) }}
{{- fail "delivery.providerSecrets.encryptionKey must be the base64 of exactly 32 bytes (44 characters, e.g. from openssl rand -base64 32)" }}
{{- end }}
{{- else }}
{{- range list (include "crm.deliveryKeySecretName" .) (include "crm.credentialsSecretName" .) }}
{{- if not $key }}
{{- $previous := lookup "v1" "Secret" $.Release.Namespace . }}
{{- $key = get (get $previous "data" | default dict) $secrets.secretKey | default "" | b64dec }}
{{- end }}
{{- end }}
{{- if and (not $key) .Values.delivery.enabled }}
{{- $key = randBytes 32 }}
{{- end }}
{{- end }}
{{- $_ := set $secrets "resolvedKey" $key }}
{{- end }}
{{- $secrets.resolvedKey }}
{{- end }}

{{/* The data of Delivery's key Secret (empty with existingSecret, or with no key yet). */}}
{{- define "crm.deliveryKeyData" -}}
{{- if not .Values.delivery.providerSecrets.existingSecret }}
{{- with include "crm.deliverySecretKey" . }}
{{ $.Values.delivery.providerSecrets.secretKey }}: {{ . | b64enc }}
{{- end }}
{{- end }}
{{- end }}

{{/*
postgres.provisioning: the names of a service's database and roles, as a dict with database, owner,
runtime. Call with (dict "root" $ "name" "contacts").
*/}}
{{- define "crm.postgresNames" -}}
{{- $prefix := .root.Values.postgres.provisioning.namePrefix }}
{{- dict "database" (printf "%s%s" $prefix .name) "runtime" (printf "%s%s" $prefix .name) "owner" (printf "%s%s_owner" $prefix .name) | toYaml }}
{{- end }}

{{/*
postgres.provisioning: the passwords of a service's two roles, as YAML (runtime, owner): the ones a
previous release generated (read back with lookup from the credentials Secret, so upgrades keep them
and running pods stay connected), else new random ones. Remembered in .Values for the render.
Call with (dict "root" $ "name" "contacts").
*/}}
{{- define "crm.postgresPasswords" -}}
{{- $prov := .root.Values.postgres.provisioning }}
{{- if not (hasKey $prov "resolvedPasswords") }}
{{- $previous := lookup "v1" "Secret" .root.Release.Namespace (include "crm.credentialsSecretName" .root) }}
{{- $_ := set $prov "resolvedPasswords" (dict "previous" (get $previous "data" | default dict)) }}
{{- end }}
{{- if not (hasKey $prov.resolvedPasswords .name) }}
{{- $key := get .root.Values.postgres.secretKeys .name }}
{{- $previous := $prov.resolvedPasswords.previous }}
{{- $runtime := get $previous (printf "%s-password" $key) | default "" | b64dec | default (randAlphaNum 32) }}
{{- $owner := get $previous (printf "%s-owner-password" $key) | default "" | b64dec | default (randAlphaNum 32) }}
{{- $_ := set $prov.resolvedPasswords .name (dict "runtime" $runtime "owner" $owner) }}
{{- end }}
{{- get $prov.resolvedPasswords .name | toYaml }}
{{- end }}

{{/* An Npgsql connection string for a provisioned role. Call with (dict "root" $ "database" ... "role" ... "password" ...). */}}
{{- define "crm.postgresConnectionString" -}}
{{- $prov := .root.Values.postgres.provisioning }}
{{- printf "Host=%s;Port=%v;Database=%s;Username=%s;Password=%s" $prov.host $prov.port .database .role .password }}
{{- with $prov.connectionOptions }};{{ . }}{{ end }}
{{- end }}

{{/*
The chart-managed credentials as Secret data (key: base64), for the sections without an
existingSecret and only what an enabled service needs. Delivery's key has a Secret of its own
(crm.deliveryKeyData); the migration Jobs' copy adds it and the PostgreSQL administrator
(crm.hookSecretData). With postgres.provisioning, per service: the login role's connection string
(<key>), the owner's (<key>-owner) and both passwords (<key>-password, <key>-owner-password).
*/}}
{{- define "crm.secretData" -}}
{{- $root := . }}
{{- $pg := $root.Values.postgres }}
{{- $resolved := dict }}
{{- include "crm.services" (dict "root" $root "out" $resolved) }}
{{- $usesRabbitmq := false }}
{{- $usesRedis := false }}
{{- range $resolved.services }}
{{- if .needs.postgres }}
{{- $key := required (printf "postgres.secretKeys.%s is required" .name) (get $pg.secretKeys .name) }}
{{- if $pg.provisioning.enabled }}
{{- if $pg.existingSecret }}
{{- fail "postgres.existingSecret holds connection strings made beforehand, while postgres.provisioning makes the roles and their connection strings: set postgres.provisioning.enabled=false, or leave postgres.existingSecret empty" }}
{{- end }}
{{- if not $root.Values.migrations.enabled }}
{{- fail "postgres.provisioning makes the databases and roles in the migration Jobs: it needs migrations.enabled (or set postgres.provisioning.enabled=false and give postgres.connectionStrings)" }}
{{- end }}
{{- $names := include "crm.postgresNames" (dict "root" $root "name" .name) | fromYaml }}
{{- $passwords := include "crm.postgresPasswords" (dict "root" $root "name" .name) | fromYaml }}
{{ $key }}: {{ include "crm.postgresConnectionString" (dict "root" $root "database" $names.database "role" $names.runtime "password" $passwords.runtime) | b64enc }}
{{ $key }}-owner: {{ include "crm.postgresConnectionString" (dict "root" $root "database" $names.database "role" $names.owner "password" $passwords.owner) | b64enc }}
{{ $key }}-password: {{ $passwords.runtime | b64enc }}
{{ $key }}-owner-password: {{ $passwords.owner | b64enc }}
{{- else if not $pg.existingSecret }}
{{- $value := required (printf "postgres.connectionStrings.%s (or postgres.existingSecret) is required" .name) (get $pg.connectionStrings .name) }}
{{ $key }}: {{ $value | b64enc }}
{{- with get ($pg.ownerConnectionStrings | default dict) .name }}
{{ $key }}-owner: {{ . | b64enc }}
{{- end }}
{{- end }}
{{- end }}
{{- $usesRabbitmq = or $usesRabbitmq .needs.rabbitmq }}
{{- $usesRedis = or $usesRedis .needs.redis }}
{{- end }}
{{- if and $usesRabbitmq (not $root.Values.rabbitmq.existingSecret) }}
{{ $root.Values.rabbitmq.secretKey }}: {{ required "rabbitmq.uri (or rabbitmq.existingSecret) is required" $root.Values.rabbitmq.uri | b64enc }}
{{- end }}
{{- if and $usesRedis (not $root.Values.redis.existingSecret) }}
{{ $root.Values.redis.secretKey }}: {{ required "redis.address (or redis.existingSecret) is required" $root.Values.redis.address | b64enc }}
{{- end }}
{{- if not $root.Values.tenancy.existingSecret }}
{{- $keys := include "crm.tokenKeys" $root | fromYaml }}
{{- with $root.Values.tenancy.secretKeys }}
{{ .signingKey }}: {{ $keys.signingKey | b64enc }}
{{ .signingKeyId }}: {{ $keys.keyId | b64enc }}
{{ .publicKey }}: {{ $keys.publicKey | b64enc }}
{{ .suppressionKey }}: {{ include "crm.suppressionKey" $root | b64enc }}
{{- end }}
{{- end }}
{{- end }}

{{/* The migration Jobs' own copy: the credentials, Delivery's key and the PostgreSQL administrator. */}}
{{- define "crm.hookSecretData" -}}
{{- $parts := list (include "crm.secretData" . | trim) (include "crm.deliveryKeyData" . | trim) }}
{{- $prov := .Values.postgres.provisioning }}
{{- if and $prov.enabled (not $prov.existingSecret) }}
{{- $uri := required "postgres.provisioning.adminUri (or postgres.provisioning.existingSecret) is required" $prov.adminUri }}
{{- $parts = append $parts (printf "%s: %s" $prov.secretKey ($uri | b64enc)) }}
{{- end }}
{{- without $parts "" | join "\n" }}
{{- end }}

{{/*
A service's environment. Call with (dict "root" $ "svc" <an item of crm.services> "secret" <name>),
plus "hook" true for a migration Job: "secret" is the chart-managed Secret to read credentials from
(the hook Job reads its own copy, which also holds Delivery's key).
Credentials first, then the chart's settings, then the user's env, so that the user's win.
*/}}
{{- define "crm.env" -}}
{{- $root := .root }}
{{- $svc := .svc }}
{{- $v := $root.Values }}
{{- if $svc.needs.postgres }}
{{- $key := get $v.postgres.secretKeys $svc.name }}
{{- $provisioned := $v.postgres.provisioning.enabled }}
{{- /* With provisioning the pods connect as the service's login role, which owns nothing. */}}
- name: ConnectionStrings__Postgres
  valueFrom:
    secretKeyRef:
      name: {{ ternary .secret ($v.postgres.existingSecret | default .secret) $provisioned }}
      key: {{ $key }}
{{- /* Whoever migrates (the hook Job, else the pods at start) does it as the tables' owner. */}}
{{- if or .hook (not $v.migrations.enabled) }}
{{- if or $provisioned (get ($v.postgres.ownerConnectionStrings | default dict) $svc.name) $v.postgres.existingSecret }}
- name: ConnectionStrings__PostgresMigrations
  valueFrom:
    secretKeyRef:
      name: {{ ternary .secret ($v.postgres.existingSecret | default .secret) $provisioned }}
      key: {{ $key }}-owner
      {{- if and (not $provisioned) $v.postgres.existingSecret }}
      # Without it, the migrations run with ConnectionStrings__Postgres.
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if $svc.needs.rabbitmq }}
- name: ConnectionStrings__RabbitMq
  valueFrom:
    secretKeyRef:
      name: {{ $v.rabbitmq.existingSecret | default .secret }}
      key: {{ $v.rabbitmq.secretKey }}
{{- end }}
{{- if $svc.needs.redis }}
- name: ConnectionStrings__Redis
  valueFrom:
    secretKeyRef:
      name: {{ $v.redis.existingSecret | default .secret }}
      key: {{ $v.redis.secretKey }}
{{- end }}
{{- /* Identity tokens: the gateway signs (the private key is its alone), every other service verifies. */}}
{{- if eq $svc.name "gateway" }}
- name: Tenancy__SigningKey
  valueFrom:
    secretKeyRef:
      name: {{ $v.tenancy.existingSecret | default .secret }}
      key: {{ $v.tenancy.secretKeys.signingKey }}
- name: Tenancy__SigningKeyId
  valueFrom:
    secretKeyRef:
      name: {{ $v.tenancy.existingSecret | default .secret }}
      key: {{ $v.tenancy.secretKeys.signingKeyId }}
{{- else }}
- name: Tenancy__PublicKeys__0__KeyId
  valueFrom:
    secretKeyRef:
      name: {{ $v.tenancy.existingSecret | default .secret }}
      key: {{ $v.tenancy.secretKeys.signingKeyId }}
- name: Tenancy__PublicKeys__0__Pem
  valueFrom:
    secretKeyRef:
      name: {{ $v.tenancy.existingSecret | default .secret }}
      key: {{ $v.tenancy.secretKeys.publicKey }}
{{- range $i, $key := $v.tenancy.additionalPublicKeys }}
- name: Tenancy__PublicKeys__{{ add1 $i }}__KeyId
  value: {{ required "tenancy.additionalPublicKeys[].keyId is required" $key.keyId | quote }}
- name: Tenancy__PublicKeys__{{ add1 $i }}__Pem
  value: {{ required "tenancy.additionalPublicKeys[].pem is required" $key.pem | quote }}
{{- end }}
{{- end }}
{{- /* The services it calls directly (Segmentation backfills from Contacts' exports), at their gRPC port. */}}
{{- range $callee := $svc.needs.calls }}
{{- if not (get (index $v $callee | default dict) "enabled") }}
{{- fail (printf "%s calls %s: enable %s too (%s.enabled=true)" $svc.name $callee $callee $callee) }}
{{- end }}
- name: ConnectionStrings__{{ title $callee }}
  value: http://{{ include "crm.fullname" $root }}-{{ $callee }}:5101
{{- end }}
{{- if eq $svc.name "contacts" }}
- name: Contacts__SuppressionKey
  valueFrom:
    secretKeyRef:
      name: {{ $v.tenancy.existingSecret | default .secret }}
      key: {{ $v.tenancy.secretKeys.suppressionKey }}
{{- end }}
{{- if eq $svc.name "delivery" }}
- name: Delivery__SecretKey
  valueFrom:
    secretKeyRef:
      name: {{ $v.delivery.providerSecrets.existingSecret | default (ternary .secret (include "crm.deliveryKeySecretName" $root) (.hook | default false)) }}
      key: {{ $v.delivery.providerSecrets.secretKey }}
{{- end }}
{{- if and $svc.needs.postgres $v.migrations.enabled }}
- name: Database__MigrateOnStart
  value: "false"
{{- end }}
{{- if not $v.metrics.enabled }}
- name: Metrics__Prometheus
  value: "false"
{{- end }}
{{- with $v.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- if eq $svc.name "gateway" }}
{{- /* The gateway's YARP clusters are <service>-http (REST, JSON transcoding) and <service>-grpc (h2c),
       one destination each named after the service (services/Gateway/appsettings.json). */}}
{{- $resolved := dict }}
{{- include "crm.services" (dict "root" $root "out" $resolved) }}
{{- range $resolved.services }}
{{- if ne .name "gateway" }}
- name: ReverseProxy__Clusters__{{ .name }}-http__Destinations__{{ .name }}__Address
  value: http://{{ .fullname }}:5100
- name: ReverseProxy__Clusters__{{ .name }}-grpc__Destinations__{{ .name }}__Address
  value: http://{{ .fullname }}:5101
{{- if eq .name "contacts" }}
- name: Gateway__ContactsGrpc
  value: http://{{ .fullname }}:5101
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- range $name, $value := $svc.values.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
What the Deployment's pods and the migration Job's pods share. Same call as crm.env, plus
"hook" true for a hook Job: it runs before the chart's ServiceAccount exists, so it keeps the
namespace's default one unless the account is not the chart's (serviceAccount.create=false).
*/}}
{{- define "crm.podCommon" -}}
{{- $root := .root }}
{{- $values := .svc.values }}
{{- if not (and .hook $root.Values.serviceAccount.create) }}
serviceAccountName: {{ include "crm.serviceAccountName" $root }}
{{- end }}
automountServiceAccountToken: false
{{- /* ASP.NET reads every environment variable as configuration; the Docker-link style variables
       for every Service in the namespace would only be noise there. */}}
enableServiceLinks: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $values.podSecurityContext | nindent 2 }}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: {{ $values.tmpSizeLimit }}
{{- if and .hook $root.Values.postgres.provisioning.enabled }}
  - name: provision-sql
    configMap:
      name: {{ include "crm.provisionSqlName" $root }}
{{- end }}
{{- end }}

{{- define "crm.provisionSqlName" -}}
{{- include "crm.fullname" . }}-provision-database
{{- end }}

{{/* The container fields both share, to be placed inside a container entry. Same call as crm.env. */}}
{{- define "crm.containerCommon" -}}
image: {{ .svc.image }}
imagePullPolicy: {{ .svc.values.image.pullPolicy }}
securityContext:
  {{- toYaml .svc.values.securityContext | nindent 2 }}
resources:
  {{- toYaml .svc.values.resources | nindent 2 }}
env:
  {{- include "crm.env" . | trim | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{- end }}
