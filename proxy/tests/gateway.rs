//! Gateway API behaviour through real HTTP: routes as the controller emits them for an HTTPRoute
//! (already in precedence order, no catch-all), weighted and failing backends, header modifiers,
//! redirects, URL rewrites and per-route timeouts.

mod support;

use std::time::{Duration, Instant};

use shifter_proto::v1::{
    Header, HeaderMatch, HeaderModifier, HttpMatch, PathModifier, Redirect, Rewrite, Route, WeightedBackend,
    path_modifier::Kind,
};
use shifter_proxy::{ConfigSource, Settings, StaticConfig};
use support::*;

// ----- routes as the controller translates an HTTPRoute rule

fn exact(path: &str) -> HttpMatch {
    HttpMatch { path_regex: format!("{}$", regex::escape(path)), ..Default::default() }
}

/// A PathPrefix match: whole segments only, so "/shop" accepts "/shop/cart" but not "/shopping".
fn prefix(path: &str) -> HttpMatch {
    let path_regex = if path == "/" { String::new() } else { format!("{}(?:/.*)?$", regex::escape(path)) };
    HttpMatch { path_regex, path_prefix: path.into(), ..Default::default() }
}

fn regular_expression(re: &str) -> HttpMatch {
    HttpMatch { path_regex: format!("(?:{re})$"), ..Default::default() }
}

/// An Exact header or query parameter match.
fn header(name: &str, value: &str) -> HeaderMatch {
    HeaderMatch { name: name.into(), value_regex: regex::escape(value) }
}

/// One HTTPRoute rule: a drawn backend that cannot serve answers for its share.
fn rule(name: &str, matches: Vec<HttpMatch>, backends: Vec<WeightedBackend>) -> Route {
    Route {
        name: format!("HTTPRoute/shop/web/{name}"),
        matches,
        backends,
        empty_backend_fails: true,
        ..Default::default()
    }
}

fn headers(pairs: &[(&str, &str)]) -> Vec<Header> {
    pairs.iter().map(|(name, value)| Header { name: (*name).into(), value: (*value).into() }).collect()
}

fn replace_prefix(with: &str) -> Option<PathModifier> {
    Some(PathModifier { kind: Some(Kind::ReplacePrefixMatch(with.into())) })
}

fn replace_full(with: &str) -> Option<PathModifier> {
    Some(PathModifier { kind: Some(Kind::ReplaceFullPath(with.into())) })
}

async fn gateway(routes: Vec<Route>) -> shifter_proxy::Proxy {
    static_proxy(vec![snapshot(AUTHORITY, 1, routes)]).await
}

/// The backend that served the request, or the status and proxy error when none did.
async fn served_by(
    client: &HttpClient,
    gw: std::net::SocketAddr,
    method: &str,
    target: &str,
    h: &[(&str, &str)],
) -> String {
    let reply = send(client, gw, method, target, h).await;
    match reply.header("x-backend") {
        "" => format!("{} {}", reply.status, reply.header(shifter_proxy::PROXY_ERROR_HEADER)),
        backend => backend.to_string(),
    }
}

/// Method, target, headers, and the backend that serves them (or the proxy's answer).
type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn the_first_matching_rule_serves_and_a_request_matching_none_gets_404() {
    let names = ["exact", "cart", "post", "canary", "gold", "shop", "item"];
    let mut servers = Vec::new();
    for name in names {
        servers.push(http_backend(name).await);
    }
    let to = |name: &str| {
        let server = servers.iter().find(|s| s.name == name).unwrap();
        vec![backend(name, 1, &[server.addr])]
    };
    // Gateway API precedence: Exact, then the longest prefix, then method, header and query matches.
    let routes = vec![
        rule("exact", vec![exact("/shop")], to("exact")),
        rule("cart", vec![prefix("/shop/cart")], to("cart")),
        rule("post", vec![HttpMatch { methods: vec!["POST".into()], ..prefix("/shop") }], to("post")),
        rule("canary", vec![HttpMatch { headers: vec![header("x-canary", "true")], ..prefix("/shop") }], to("canary")),
        rule("gold", vec![HttpMatch { query_params: vec![header("tier", "gold")], ..prefix("/shop") }], to("gold")),
        rule("shop", vec![prefix("/shop")], to("shop")),
        rule("item", vec![regular_expression("/items/[0-9]+")], to("item")),
    ];
    let proxy = gateway(routes).await;
    let (gw, client) = (proxy.gateway_addrs()[0], http1_client());
    let cases: &[Case] = &[
        ("GET", "/shop", &[], "exact"),
        ("POST", "/shop", &[("x-canary", "true")], "exact"),
        ("GET", "/shop/", &[], "shop"),
        ("GET", "/shop/cart", &[], "cart"),
        ("GET", "/shop/cart/items?tier=gold", &[], "cart"),
        ("GET", "/shop/carts", &[], "shop"),
        ("POST", "/shop/x", &[("x-canary", "true")], "post"),
        ("GET", "/shop/x", &[("x-canary", "true")], "canary"),
        ("GET", "/shop/x", &[("x-canary", "truest")], "shop"),
        ("GET", "/shop/x?tier=gold", &[], "gold"),
        ("GET", "/shop/x?tier=silver&tier=gold", &[], "shop"),
        ("GET", "/items/42", &[], "item"),
        ("GET", "/items/42/reviews", &[], "404 no route"),
        ("GET", "/shopping", &[], "404 no route"),
        ("GET", "/", &[], "404 no route"),
    ];
    for (method, target, h, expected) in cases {
        assert_eq!(&served_by(&client, gw, method, target, h).await, expected, "{method} {target} {h:?}");
    }
    let (_, text) = admin_get(proxy.admin_addr().unwrap(), "/metrics").await;
    assert_eq!(metric(&text, "proxy_unrouted_total", &[("authority", AUTHORITY), ("reason", "no route")]), 3);
}

#[tokio::test]
async fn a_prefix_of_slash_serves_every_path() {
    let web = http_backend("web").await;
    let proxy = gateway(vec![rule("all", vec![prefix("/")], vec![backend("web", 1, &[web.addr])])]).await;
    let (gw, client) = (proxy.gateway_addrs()[0], http1_client());
    for target in ["/", "/a", "/a/b?c=d"] {
        assert_eq!(served_by(&client, gw, "GET", target, &[]).await, "web", "{target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_70_30_hold_within_5_points() {
    let (v1, v2) = (http_backend("web-v1").await, http_backend("web-v2").await);
    let backends = vec![backend("web-v1", 70, &[v1.addr]), backend("web-v2", 30, &[v2.addr])];
    let proxy = gateway(vec![rule("split", vec![prefix("/")], backends)]).await;
    // 500 requests, as the Gateway API mesh weight test sends: the proxy's sequenced draws keep
    // every run within a point or two of the weights, concurrent requests included.
    let seen = spread(&http1_client(), proxy.gateway_addrs()[0], 500, 8).await;
    let (a, b) = (seen.get("200 web-v1").copied().unwrap_or(0), seen.get("200 web-v2").copied().unwrap_or(0));
    assert_eq!(a + b, 500, "{seen:?}");
    let share = b as f64 / 5.0;
    assert!((25.0..=35.0).contains(&share), "web-v2 got {share}% of traffic");
    assert_eq!((v1.hits() as usize, v2.hits() as usize), (a, b));
}

#[tokio::test]
async fn a_backend_that_cannot_be_resolved_answers_its_share_with_500() {
    let healthy = http_backend("web-v1").await;
    let missing = WeightedBackend {
        fail_status: 500,
        fail_reason: "Service shop/web-v3 not found".into(),
        ..backend("web-v3", 1, &[])
    };
    let proxy =
        gateway(vec![rule("split", vec![prefix("/")], vec![backend("web-v1", 1, &[healthy.addr]), missing])]).await;
    let (gw, client) = (proxy.gateway_addrs()[0], http1_client());
    let (mut failed, mut served) = (0, 0);
    for _ in 0..400 {
        let reply = send(&client, gw, "GET", "/", &[]).await;
        match (reply.status, reply.header("x-backend"), reply.header(shifter_proxy::PROXY_ERROR_HEADER)) {
            (500, "", "invalid backend") => {
                assert_eq!(reply.body, "invalid backend: Service shop/web-v3 not found\n");
                failed += 1;
            }
            (200, "web-v1", "") => served += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    // Half of 400 draws, give or take five standard deviations (10 each).
    assert!((150..=250).contains(&failed), "{failed} of 400 answered by the invalid backend");
    assert_eq!(healthy.hits(), served);
    let (_, text) = admin_get(proxy.admin_addr().unwrap(), "/metrics").await;
    let errors = [("dst_service", "web-v3"), ("classification", "failure"), ("status_code", "500")];
    assert_eq!(metric(&text, "response_total", &errors), failed);
}

#[tokio::test]
async fn a_backend_with_no_ready_endpoints_answers_its_share_with_503_unlike_an_smi_split() {
    let healthy = http_backend("web-v1").await;
    let backends = vec![backend("web-v1", 1, &[healthy.addr]), backend("web-v2", 1, &[])];
    let proxy = gateway(vec![rule("split", vec![prefix("/")], backends.clone())]).await;
    let (gw, client) = (proxy.gateway_addrs()[0], http1_client());
    let (mut unavailable, mut served) = (0, 0);
    for _ in 0..400 {
        let reply = send(&client, gw, "GET", "/", &[]).await;
        match (reply.status, reply.header("x-backend"), reply.header(shifter_proxy::PROXY_ERROR_HEADER)) {
            (503, "", "no ready endpoints") => unavailable += 1,
            (200, "web-v1", "") => served += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!((150..=250).contains(&unavailable), "{unavailable} of 400 answered 503");
    assert_eq!(healthy.hits(), served);
    // The same split as an SMI route moves the draw on to the backend that can serve.
    proxy.apply_snapshot(snapshot(AUTHORITY, 2, vec![default_route(backends)])).unwrap();
    let seen = spread(&client, gw, 200, 4).await;
    assert_eq!(seen.get("200 web-v1"), Some(&200), "{seen:?}");
}

#[tokio::test]
async fn header_modifiers_change_what_the_backend_and_the_client_see() {
    let web = mirror_backend("web").await;
    let route = Route {
        request_headers: Some(HeaderModifier {
            set: headers(&[("x-tenant", "acme"), ("x-region", "eu")]),
            add: headers(&[("x-trace", "gateway")]),
            remove: vec!["x-debug".into()],
        }),
        response_headers: Some(HeaderModifier {
            set: headers(&[("cache-control", "max-age=60")]),
            add: headers(&[("x-powered-by", "shifter")]),
            remove: vec!["x-build".into()],
        }),
        ..rule("edits", vec![prefix("/")], vec![backend("web", 1, &[web.addr])])
    };
    let proxy = gateway(vec![route]).await;
    let sent = [("x-tenant", "other"), ("x-trace", "client"), ("x-debug", "1"), ("x-kept", "yes")];
    let reply = send(&http1_client(), proxy.gateway_addrs()[0], "GET", "/", &sent).await;
    assert_eq!(reply.status, 200);
    let seen = reply.seen();
    assert_eq!(seen.header("x-tenant"), ["acme"], "set replaces: {seen:?}");
    assert_eq!(seen.header("x-region"), ["eu"], "set adds a header the client did not send: {seen:?}");
    assert_eq!(seen.header("x-trace"), ["client", "gateway"], "add keeps what was there: {seen:?}");
    assert!(seen.header("x-debug").is_empty(), "removed: {seen:?}");
    assert_eq!(seen.header("x-kept"), ["yes"], "{seen:?}");
    assert_eq!(reply.header_values("cache-control"), ["max-age=60"]);
    assert_eq!(reply.header_values("x-powered-by"), ["web", "shifter"]);
    assert!(reply.header_values("x-build").is_empty());
    assert_eq!(reply.header("x-backend"), "web");
}

#[tokio::test]
async fn a_redirect_answers_with_location_and_sends_nothing_upstream() {
    let web = http_backend("web").await;
    let to_web = || vec![backend("web", 1, &[web.addr])];
    let moved = Redirect {
        scheme: "https".into(),
        hostname: "shop.example.com".into(),
        status_code: 301,
        path: replace_prefix("/new"),
        ..Default::default()
    };
    let routes = vec![
        Route { redirect: Some(moved), ..rule("moved", vec![prefix("/old")], to_web()) },
        Route {
            redirect: Some(Redirect { path: replace_full("/home"), ..Default::default() }),
            ..rule("home", vec![exact("/")], to_web())
        },
    ];
    let proxy = gateway(routes).await;
    let (gw, client) = (proxy.gateway_addrs()[0], http1_client());
    let host = [("host", "www.shop.test:8080")];
    let reply = send(&client, gw, "GET", "/old/items?page=2", &host).await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), "https://shop.example.com/new/items?page=2", "https's own port is left out");
    // The default keeps the request's scheme, host and port, and answers 302.
    let reply = send(&client, gw, "GET", "/?utm=mail", &host).await;
    assert_eq!(reply.status, 302);
    assert_eq!(reply.header("location"), "http://www.shop.test:8080/home?utm=mail");
    // Over HTTP/2 the host and port asked for are the request's authority.
    let reply = send(&h2_client(), gw, "GET", "/?utm=mail", &[]).await;
    assert_eq!((reply.status, reply.header("location")), (302, format!("http://{gw}/home?utm=mail").as_str()));
    assert_eq!(web.hits(), 0);
}

#[tokio::test]
async fn a_url_rewrite_sends_the_backend_a_new_host_and_path_keeping_the_query() {
    let api = mirror_backend("api").await;
    let rewrite = Rewrite { hostname: "api.internal".into(), path: replace_prefix("/v2") };
    let route =
        Route { rewrite: Some(rewrite), ..rule("api", vec![prefix("/api")], vec![backend("api", 1, &[api.addr])]) };
    let proxy = gateway(vec![route]).await;
    let gw = proxy.gateway_addrs()[0];
    for client in [http1_client(), h2_client()] {
        let seen = send(&client, gw, "GET", "/api/users?limit=5&sort=name", &[]).await.seen();
        assert_eq!((seen.method.as_str(), seen.target.as_str()), ("GET", "/v2/users?limit=5&sort=name"));
        assert_eq!(seen.host(), "api.internal", "{seen:?}");
        let seen = send(&client, gw, "POST", "/api", &[]).await.seen();
        assert_eq!((seen.method.as_str(), seen.target.as_str(), seen.host()), ("POST", "/v2", "api.internal"));
    }
}

#[tokio::test]
async fn a_route_timeout_cuts_a_slow_backend_off_before_the_proxys_own() {
    let delay = Duration::from_secs(2);
    let slow = http_backend_with("web", 200, delay).await;
    let to_slow = || vec![backend("web", 1, &[slow.addr])];
    let routes = vec![
        Route { request_timeout_ms: 200, ..rule("request", vec![prefix("/request")], to_slow()) },
        Route { backend_timeout_ms: 200, ..rule("attempt", vec![prefix("/attempt")], to_slow()) },
    ];
    let settings = Settings { request_timeout: Duration::from_secs(30), ..test_settings() };
    let config = StaticConfig { snapshots: vec![snapshot(AUTHORITY, 1, routes)] };
    let proxy = start_proxy(ConfigSource::Static(config), settings.clone()).await;
    let (gw, client) = (proxy.gateway_addrs()[0], http1_client());
    for target in ["/request", "/attempt"] {
        let started = Instant::now();
        let reply = send(&client, gw, "GET", target, &[]).await;
        assert_eq!(
            (reply.status, reply.header(shifter_proxy::PROXY_ERROR_HEADER)),
            (504, "response timeout"),
            "{target}"
        );
        // Neither the backend's delay nor the proxy's own bound (longer still) was waited out.
        assert!(started.elapsed() < delay.min(settings.request_timeout), "{target} took {:?}", started.elapsed());
    }
    let (_, text) = admin_get(proxy.admin_addr().unwrap(), "/metrics").await;
    let timeouts = [("dst_service", "web"), ("classification", "failure"), ("status_code", "504")];
    assert_eq!(metric(&text, "response_total", &timeouts), 2);
}

#[tokio::test]
async fn a_route_timeout_longer_than_the_proxys_own_lets_a_slow_backend_answer() {
    let settings = Settings { request_timeout: Duration::from_millis(200), ..test_settings() };
    let slow = http_backend_with("web", 200, settings.request_timeout * 3).await;
    let route = Route {
        request_timeout_ms: 10_000,
        ..rule("patient", vec![prefix("/")], vec![backend("web", 1, &[slow.addr])])
    };
    let config = StaticConfig { snapshots: vec![snapshot(AUTHORITY, 1, vec![route])] };
    let proxy = start_proxy(ConfigSource::Static(config), settings).await;
    assert_eq!(served_by(&http1_client(), proxy.gateway_addrs()[0], "GET", "/", &[]).await, "web");
}
