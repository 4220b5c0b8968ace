//! The one routing path every HTTP request takes, from either listener: find the authority's
//! table, match a route, pick a backend by weight and an endpoint by P2C, send, and observe the
//! outcome. Requests are retried on another pick only when nothing was sent (dial failures), so a
//! retry can never duplicate a request; each failed dial that is retried is counted against the
//! backend it was meant for (`request_attempt_failures_total`), since the client never sees it.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tracing::{Instrument, debug, debug_span};

use crate::PROXY_ERROR_HEADER;
use crate::balance::pick_endpoint;
use crate::body::{Outcome, ProxyBody, grpc_status};
use crate::destinations::{Destination, Destinations};
use crate::metrics::FailureClass;
use crate::pool::{SendError, UpstreamProtocol};
use crate::route::{PathEdit, Redirect, Rewrite, Selected};

/// What a listener contributes to routing.
pub(crate) struct HttpContext {
    pub destinations: Arc<Destinations>,
    /// The gateway's apex authority; `None` routes by the request's own authority (outbound).
    pub fixed_authority: Option<String>,
    /// The gateway's destination, resolved once so requests skip the authority lookup.
    pub fixed_destination: Option<Arc<Destination>>,
}

pub(crate) async fn forward(
    ctx: Arc<HttpContext>,
    protocol: UpstreamProtocol,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let dests = &ctx.destinations;
    let metrics = &dests.compiler().metrics;
    let authority: Cow<'_, str> = match &ctx.fixed_authority {
        Some(fixed) => Cow::Borrowed(fixed),
        None => match request_authority(&req) {
            Some(requested) => Cow::Owned(requested),
            None => return local(StatusCode::BAD_REQUEST, "missing host"),
        },
    };
    if req.method() == Method::CONNECT {
        let authority = authority.into_owned();
        return tunnel(ctx.clone(), req, authority).await;
    }
    let resolved = match &ctx.fixed_destination {
        Some(dest) => dests.table_of(dest).await,
        None => dests.resolve(&authority).await,
    };
    let table = match resolved {
        Ok(table) => table,
        Err(unrouted) => {
            metrics.record_unrouted(&dests.unrouted_label(&authority), unrouted.reason());
            return local(unrouted.status(), unrouted.reason());
        }
    };
    if !table.exists() {
        metrics.record_unrouted(&dests.unrouted_label(&authority), "service not found");
        return local(StatusCode::SERVICE_UNAVAILABLE, "service not found");
    }
    // A route attached to the Service that matches nothing answers 404 (Gateway API); SMI
    // snapshots always end with a catch-all, so they never get here.
    let Some(Selected { route, prefix }) =
        table.route_for(req.method(), req.uri().path(), req.uri().query(), req.headers())
    else {
        metrics.record_unrouted(&table.snapshot.authority, "no route");
        return local(StatusCode::NOT_FOUND, "no route");
    };
    if let Some(redirect) = &route.filters.redirect {
        return redirect_response(redirect, &req, prefix, &authority);
    }
    if let Some(edits) = &route.filters.request_headers {
        edits.apply(req.headers_mut());
    }
    if let Some(rewrite) = &route.filters.rewrite {
        rewrite_request(rewrite, &mut req, prefix);
    }
    let grpc = is_grpc(req.headers());
    prepare_request(&mut req, protocol, &authority);
    let settings = dests.settings();
    let timeout = route.timeout.unwrap_or(settings.request_timeout);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(backend) = route.pick_backend(attempt) else {
            metrics.record_unrouted(&table.snapshot.authority, "no ready endpoints");
            return local(StatusCode::SERVICE_UNAVAILABLE, "no ready endpoints");
        };
        let fail = |status: StatusCode, class: FailureClass, reason: &'static str| {
            backend.stats.record_request();
            backend.stats.record_response(status.as_u16(), Some(class), start.elapsed());
            local(status, reason)
        };
        if let Some((status, why)) = &backend.invalid {
            // A reference that cannot be resolved answers its share of requests, so the error
            // is as visible as the weight the user gave it.
            backend.stats.record_request();
            backend.stats.record_response(status.as_u16(), Some(FailureClass::Http5xx), start.elapsed());
            return local_explained(*status, "invalid backend", why);
        }
        if backend.endpoints.is_empty() {
            return fail(StatusCode::SERVICE_UNAVAILABLE, FailureClass::Connect, "no ready endpoints");
        }
        let endpoint = pick_endpoint(&backend.endpoints);
        let conn = match endpoint.pool.checkout(protocol).await {
            Ok(conn) => conn,
            Err(error) => {
                endpoint.mark_failed();
                debug!(%error, route = %route.name, endpoint = %endpoint.addr, attempt, "dial failed");
                if attempt < settings.max_attempts {
                    // The client will not see this failure, but the backend failed it: counted as
                    // a failed attempt so a dead canary endpoint shows up as dead.
                    backend.stats.record_failed_attempt(error.attempt_failure());
                    continue;
                }
                return fail(StatusCode::BAD_GATEWAY, FailureClass::Connect, "upstream connect failed");
            }
        };
        let in_flight = endpoint.start();
        let sent_at = Instant::now();
        let (response, connection) = match tokio::time::timeout(timeout, endpoint.pool.send(conn, req)).await {
            Ok(Ok(sent)) => sent,
            Ok(Err(SendError::NotSent(unsent))) => {
                // A pooled connection the endpoint had already closed: the request never
                // reached the backend, nor did a new dial fail, so this is no trial of it.
                req = *unsent;
                if attempt < settings.max_attempts {
                    continue;
                }
                return fail(StatusCode::BAD_GATEWAY, FailureClass::Connect, "upstream connection closed");
            }
            Ok(Err(SendError::Failed(error))) => {
                debug!(%error, endpoint = %endpoint.addr, "upstream request failed");
                endpoint.observe(sent_at.elapsed());
                return fail(StatusCode::BAD_GATEWAY, FailureClass::Connect, "upstream connection failed");
            }
            Err(_) => {
                endpoint.observe(timeout);
                return fail(StatusCode::GATEWAY_TIMEOUT, FailureClass::Timeout, "response timeout");
            }
        };
        endpoint.observe(sent_at.elapsed());
        endpoint.mark_ok();
        drop(in_flight);
        backend.stats.record_request();
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if let Some(edits) = &route.filters.response_headers {
            edits.apply(&mut parts.headers);
        }
        let outcome = Outcome {
            stats: backend.stats.clone(),
            status: parts.status.as_u16(),
            grpc,
            grpc_status: grpc_status(&parts.headers),
            latency: start.elapsed(),
        };
        return Response::from_parts(parts, ProxyBody::upstream(body, outcome, connection));
    }
}

/// `CONNECT host:port` (what HTTP_PROXY clients send for TLS): answer 200 and carry the tunnel as
/// an opaque connection, split per connection by the authority's weights.
async fn tunnel(ctx: Arc<HttpContext>, req: Request<Incoming>, authority: String) -> Response<ProxyBody> {
    let dests = &ctx.destinations;
    match dests.resolve(&authority).await {
        Ok(table) if table.exists() => {}
        Ok(_) => return local(StatusCode::SERVICE_UNAVAILABLE, "service not found"),
        Err(unrouted) => {
            dests.compiler().metrics.record_unrouted(&dests.unrouted_label(&authority), unrouted.reason());
            return local(unrouted.status(), unrouted.reason());
        }
    }
    let dests = dests.clone();
    let span = debug_span!("tunnel", %authority);
    tokio::spawn(
        async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => crate::tcp::forward(TokioIo::new(upgraded), Bytes::new(), &authority, &dests).await,
                Err(error) => debug!(%error, "CONNECT upgrade failed"),
            }
        }
        .instrument(span),
    );
    Response::new(ProxyBody::local(Bytes::new()))
}

/// What the client dialled: the absolute-form or HTTP/2 authority, else the Host header.
pub(crate) fn request_authority<B>(req: &Request<B>) -> Option<String> {
    if let Some(a) = req.uri().authority() {
        return Some(a.as_str().to_string());
    }
    req.headers().get(header::HOST)?.to_str().ok().map(str::to_string)
}

pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/grpc"))
}

/// HTTP/1 upstreams get an origin-form target and a Host header; HTTP/2 upstreams get a full URI
/// (hyper derives `:scheme` and `:authority` from it). Hop-by-hop headers never cross the proxy.
/// A target already in the right form (the usual case) is left as it is, not re-parsed.
pub(crate) fn prepare_request<B>(req: &mut Request<B>, protocol: UpstreamProtocol, authority: &str) {
    strip_hop_by_hop(req.headers_mut());
    let mut parts = match protocol {
        UpstreamProtocol::Http1 => {
            if !req.headers().contains_key(header::HOST)
                && let Ok(host) = HeaderValue::from_str(req.uri().authority().map_or(authority, |a| a.as_str()))
            {
                req.headers_mut().insert(header::HOST, host);
            }
            if req.uri().scheme().is_none() && req.uri().authority().is_none() {
                return;
            }
            let mut parts = req.uri().clone().into_parts();
            parts.scheme = None;
            parts.authority = None;
            parts
        }
        UpstreamProtocol::Http2 => {
            if req.uri().scheme().is_some() && req.uri().authority().is_some() {
                return;
            }
            let mut parts = req.uri().clone().into_parts();
            if parts.authority.is_none() {
                let host = req.headers().get(header::HOST).map_or(authority.as_bytes(), HeaderValue::as_bytes);
                let Ok(host) = Authority::try_from(host) else { return };
                parts.authority = Some(host);
            }
            parts.scheme.get_or_insert(Scheme::HTTP);
            parts
        }
    };
    parts.path_and_query.get_or_insert(PathAndQuery::from_static("/"));
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1, plus legacy ones).
/// `HeaderName`s, not strings, so removing them does not parse names on every request.
pub(crate) const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRAILER,
];

pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the (few) names finds which hop-by-hop headers are present, so a message
    // carrying none, or only `connection: keep-alive`, costs no lookup per listed name.
    let mut present = 0u16;
    let mut te = false;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        } else if name == header::TE {
            te = true;
        }
    }
    if present & 1 != 0 {
        // Names the Connection header lists are hop-by-hop too; `close` and `keep-alive` are
        // options, not header names.
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .collect();
        for name in &listed {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    // `te: trailers` is end-to-end in practice (gRPC requires it); any other TE is not.
    if te && headers.get(header::TE).is_some_and(|v| v != "trailers") {
        headers.remove(header::TE);
    }
}

/// The redirect a route answers with: the request's scheme, host, port and path unless the route
/// replaces them; the query is kept. A port is left out of `Location` when it is the scheme's own.
fn redirect_response<B>(r: &Redirect, req: &Request<B>, prefix: &str, authority: &str) -> Response<ProxyBody> {
    let requested = req.uri().authority().map_or(authority, |a| a.as_str());
    let requested = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or(requested);
    let (host, port) = match requested.parse::<Authority>() {
        Ok(a) => (a.host().to_string(), a.port_u16()),
        Err(_) => (requested.to_string(), None),
    };
    let scheme =
        r.scheme.clone().or_else(|| req.uri().scheme_str().map(str::to_string)).unwrap_or_else(|| "http".into());
    let port = match (r.port, &r.scheme) {
        (Some(p), _) => Some(p),
        (None, Some(_)) => None,
        (None, None) => port,
    };
    let well_known = |p: u16| (scheme == "http" && p == 80) || (scheme == "https" && p == 443);
    let port = port.filter(|p| !well_known(*p)).map(|p| format!(":{p}")).unwrap_or_default();
    let host = r.hostname.clone().unwrap_or(host);
    let path = r.path.as_ref().map_or_else(|| req.uri().path().to_string(), |e| e.apply(req.uri().path(), prefix));
    let query = req.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let location = format!("{scheme}://{host}{port}{path}{query}");
    let mut response = Response::new(ProxyBody::local(Bytes::new()));
    *response.status_mut() = r.status;
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// URLRewrite: the Host (and an absolute-form authority) and the path, keeping the query.
fn rewrite_request<B>(r: &Rewrite, req: &mut Request<B>, prefix: &str) {
    let mut parts = req.uri().clone().into_parts();
    if let Some(host) = &r.hostname {
        req.headers_mut().insert(header::HOST, host.clone());
        if parts.authority.is_some() {
            parts.authority = host.to_str().ok().and_then(|h| Authority::try_from(h).ok());
        }
    }
    if let Some(edit) = &r.path {
        let path = edit_path(edit, req.uri(), prefix);
        parts.path_and_query = PathAndQuery::try_from(path).ok().or(parts.path_and_query);
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

fn edit_path(edit: &PathEdit, uri: &Uri, prefix: &str) -> String {
    let path = edit.apply(uri.path(), prefix);
    match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

/// A response the proxy writes itself, naming why in `shifter-proxy-error`.
pub(crate) fn local(status: StatusCode, reason: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::local(format!("{reason}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(PROXY_ERROR_HEADER, HeaderValue::from_static(reason));
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// [`local`] with a longer explanation in the body.
pub(crate) fn local_explained(status: StatusCode, reason: &'static str, why: &str) -> Response<ProxyBody> {
    let mut response = local(status, reason);
    *response.body_mut() = ProxyBody::local(format!("{reason}: {why}\n"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_form_becomes_origin_form_with_host() {
        let mut req = Request::get("http://web.shop:80/a?b=1").header("connection", "x-hop").body(()).unwrap();
        req.headers_mut().insert("x-hop", HeaderValue::from_static("1"));
        req.headers_mut().insert("te", HeaderValue::from_static("trailers"));
        prepare_request(&mut req, UpstreamProtocol::Http1, "ignored:80");
        assert_eq!(req.uri(), "/a?b=1");
        assert_eq!(req.headers()["host"], "web.shop:80");
        assert!(!req.headers().contains_key("x-hop") && !req.headers().contains_key("connection"));
        assert_eq!(req.headers()["te"], "trailers");
    }

    #[test]
    fn listed_and_legacy_hop_by_hop_headers_are_removed_from_any_message() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Keep-Alive, X-Trace-Hop"));
        h.insert("x-trace-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("te", HeaderValue::from_static("gzip"));
        h.insert("x-end-to-end", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().map(HeaderName::as_str).collect::<Vec<_>>(), ["x-end-to-end"]);
    }

    #[test]
    fn origin_form_without_host_gets_the_authority() {
        let mut req = Request::get("/a?b=1").body(()).unwrap();
        prepare_request(&mut req, UpstreamProtocol::Http1, "web.shop:80");
        assert_eq!(req.uri(), "/a?b=1");
        assert_eq!(req.headers()["host"], "web.shop:80");
    }

    #[test]
    fn http2_upstream_gets_a_full_uri() {
        let mut req = Request::get("/svc/Method").header("host", "web.shop:80").body(()).unwrap();
        prepare_request(&mut req, UpstreamProtocol::Http2, "x:80");
        assert_eq!(req.uri(), "http://web.shop:80/svc/Method");
    }
}
