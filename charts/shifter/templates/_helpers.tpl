{{/*
Name prefix of this release's objects: the release name when it already says "shifter", else
"<release>-shifter".
*/}}
{{- define "shifter.fullname" -}}
{{- if contains "shifter" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-shifter" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end }}

{{- define "shifter.labels" -}}
app.kubernetes.io/name: shifter
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* Labels that pick the controller's pods; never change them in an upgrade (selectors are immutable). */}}
{{- define "shifter.controller.selector" -}}
app.kubernetes.io/name: shifter
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/*
The controller's Service. Its name and namespace are fixed because the TrafficSplit CRD in crds/
(which Helm does not template) sends conversion reviews to shifter-controller.shifter-system.svc.
*/}}
{{- define "shifter.controller.service" -}}
shifter-controller
{{- end }}

{{/* Headless Service giving each replica a DNS name, which the leader's certificate covers. */}}
{{- define "shifter.controller.peers" -}}
{{ include "shifter.fullname" . }}-controller-peers
{{- end }}

{{/* Secret with ca.crt, tls.crt, tls.key and token. */}}
{{- define "shifter.credentials.secret" -}}
{{- .Values.credentials.existingSecret | default (printf "%s-controller-credentials" (include "shifter.fullname" .)) -}}
{{- end }}

{{- define "shifter.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* Where the controller keeps state; the credentials Secret is mounted at its tls/ subdirectory. */}}
{{- define "shifter.controller.stateDir" -}}
/var/run/shifter
{{- end }}

{{/* Where gateway proxies find the CA and token. */}}
{{- define "shifter.gateway.credentialsDir" -}}
/var/run/shifter/controller
{{- end }}

{{/* Pod-level security context shared by every shifter pod. */}}
{{- define "shifter.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Container-level security context shared by every shifter container. */}}
{{- define "shifter.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
{{- end }}

{{/* Scheduling constraints every shifter pod shares. */}}
{{- define "shifter.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Stops the install with a message naming the value to fix. */}}
{{- define "shifter.validate" -}}
{{- if ne .Release.Namespace "shifter-system" -}}
{{- fail (printf "shifter must be installed in the namespace shifter-system, not %q: the TrafficSplit CRD's conversion webhook calls the Service shifter-controller.shifter-system.svc. Install with --namespace shifter-system --create-namespace." .Release.Namespace) -}}
{{- end -}}
{{- if not (has .Values.controller.podAntiAffinity (list "soft" "hard" "none")) -}}
{{- fail (printf "controller.podAntiAffinity is %q; use soft, hard or none" (toString .Values.controller.podAntiAffinity)) -}}
{{- end -}}
{{- if lt (int .Values.controller.replicas) 1 -}}
{{- fail "controller.replicas must be at least 1" -}}
{{- end -}}
{{- if eq (int .Values.controller.grpcPort) (int .Values.controller.adminPort) -}}
{{- fail "controller.grpcPort and controller.adminPort must differ" -}}
{{- end -}}
{{- if eq (int .Values.gateway.listenPort) (int .Values.gateway.adminPort) -}}
{{- fail "gateway.listenPort and gateway.adminPort must differ" -}}
{{- end -}}
{{- if not (has .Values.gateway.serviceType (list "ClusterIP" "NodePort" "LoadBalancer")) -}}
{{- fail (printf "gateway.serviceType is %q; use ClusterIP, NodePort or LoadBalancer" (toString .Values.gateway.serviceType)) -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $i, $g := .Values.gateways -}}
{{- range $field := list "name" "service" "namespace" "port" -}}
{{- if not (get $g $field) -}}
{{- fail (printf "gateways[%d].%s is required: each gateway needs name, service, namespace and port, e.g. {name: web, service: web, namespace: shop, port: 80}" $i $field) -}}
{{- end -}}
{{- end -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" (toString $g.name)) -}}
{{- fail (printf "gateways[%d].name %q is not a DNS label; use lowercase letters, digits and '-'" $i (toString $g.name)) -}}
{{- end -}}
{{- if hasKey $seen (toString $g.name) -}}
{{- fail (printf "gateways[%d].name %q is used twice; give each gateway its own name" $i (toString $g.name)) -}}
{{- end -}}
{{- $_ := set $seen (toString $g.name) true -}}
{{- if and (hasKey $g "serviceType") (not (has $g.serviceType (list "ClusterIP" "NodePort" "LoadBalancer"))) -}}
{{- fail (printf "gateways[%d].serviceType is %q; use ClusterIP, NodePort or LoadBalancer" $i (toString $g.serviceType)) -}}
{{- end -}}
{{- range $field := list "port" "servicePort" -}}
{{- if hasKey $g $field -}}
{{- $p := int (get $g $field) -}}
{{- if or (lt $p 1) (gt $p 65535) -}}
{{- fail (printf "gateways[%d].%s is %v; use a port number from 1 to 65535" $i $field (get $g $field)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end }}
