//! The dashboard's pure parts (the steward-signed request scheme, the JSON shapes, metrics)
//! and its HTTP server's own defences.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod signed {
    //! Every way a steward request can be wrong is refused, and the right one passes.
    use harambee_dashboard::{AuthError, MAX_SKEW_MS, SignedHeaders, StewardRequest};
    use harambee_identity::Identity;

    const NOW: u64 = 1_750_000_000_000;

    fn request<'a>(body: &'a [u8]) -> StewardRequest<'a> {
        StewardRequest {
            federation: "fed-1",
            method: "POST",
            path: "/api/admin/remove",
            body,
            timestamp_ms: NOW,
            nonce: [9; 16],
        }
    }

    fn check(headers: &SignedHeaders, stewards: &[String]) -> Result<(), AuthError> {
        headers
            .verify(
                "fed-1",
                "POST",
                "/api/admin/remove",
                br#"{"participant":2}"#,
                stewards,
                NOW + 1000,
            )
            .map(|_| ())
    }

    #[test]
    fn a_stewards_signature_passes_and_names_the_steward_and_nonce() {
        let steward = Identity::generate().unwrap();
        let headers = request(br#"{"participant":2}"#).sign(&steward);
        let by = headers
            .verify(
                "fed-1",
                "POST",
                "/api/admin/remove",
                br#"{"participant":2}"#,
                &[steward.public().to_string()],
                NOW,
            )
            .unwrap();
        assert_eq!(by.steward, steward.public().to_string());
        assert_eq!(by.nonce, "09".repeat(16));
        assert_eq!(by.timestamp_ms, NOW);
    }

    #[test]
    fn each_signed_part_is_bound_into_the_signature() {
        let steward = Identity::generate().unwrap();
        let stewards = vec![steward.public().to_string()];
        let body = br#"{"participant":2}"#;
        let signed = |r: StewardRequest<'_>| check(&r.sign(&steward), &stewards);
        assert_eq!(signed(request(body)), Ok(()));
        let changed: [StewardRequest<'_>; 6] = [
            StewardRequest {
                federation: "fed-2",
                ..request(body)
            },
            StewardRequest {
                method: "PUT",
                ..request(body)
            },
            StewardRequest {
                path: "/api/admin/pause",
                ..request(body)
            },
            request(br#"{"participant":3}"#),
            StewardRequest {
                timestamp_ms: NOW + 1,
                ..request(body)
            },
            StewardRequest {
                nonce: [8; 16],
                ..request(body)
            },
        ];
        for (k, other) in changed.into_iter().enumerate() {
            // The check is asked about the original request. A changed federation, method,
            // path or body: present the other's signature. A changed timestamp or nonce:
            // present the original's signature with the other's header values.
            let theirs = other.sign(&steward);
            let mut headers = request(body).sign(&steward);
            headers.timestamp_ms = theirs.timestamp_ms;
            headers.nonce = theirs.nonce;
            if k < 4 {
                headers.signature = theirs.signature;
            }
            assert_eq!(
                check(&headers, &stewards),
                Err(AuthError::BadSignature),
                "change {k} must break the signature"
            );
        }
    }

    #[test]
    fn unsigned_malformed_foreign_and_stale_requests_are_refused_by_name() {
        let steward = Identity::generate().unwrap();
        let outsider = Identity::generate().unwrap();
        let stewards = vec![steward.public().to_string()];
        let body = br#"{"participant":2}"#;

        // Unsigned: no headers at all.
        let none = SignedHeaders::parse(|_| None).unwrap_err();
        assert!(matches!(none, AuthError::Missing(_)), "{none}");
        assert!(none.to_string().contains("unsigned"));
        // A timestamp that is not a number.
        let bad_time = SignedHeaders::parse(|name| {
            Some(if name == harambee_dashboard::HEADER_TIMESTAMP {
                "yesterday"
            } else {
                "00"
            })
        })
        .unwrap_err();
        assert!(
            matches!(bad_time, AuthError::Malformed { .. }),
            "{bad_time}"
        );

        // Malformed key, nonce, signature.
        let good = request(body).sign(&steward);
        for (k, broken) in [
            SignedHeaders {
                steward: "zz".into(),
                ..good.clone()
            },
            SignedHeaders {
                nonce: "0102".into(),
                ..good.clone()
            },
            SignedHeaders {
                signature: "not hex".into(),
                ..good.clone()
            },
        ]
        .iter()
        .enumerate()
        {
            assert!(
                matches!(check(broken, &stewards), Err(AuthError::Malformed { .. })),
                "case {k}"
            );
        }
        // A signature of the right length that is wrong.
        let mut flipped = good.clone();
        flipped.signature.replace_range(0..2, "00");
        if flipped.signature == good.signature {
            flipped.signature.replace_range(0..2, "11");
        }
        assert_eq!(check(&flipped, &stewards), Err(AuthError::BadSignature));
        // Signed by a key that is not a steward, even if correctly.
        let foreign = request(body).sign(&outsider);
        assert!(matches!(
            check(&foreign, &stewards),
            Err(AuthError::NotSteward(k)) if k == outsider.public().to_string()
        ));
        // A steward's key on someone else's signature.
        let transplanted = SignedHeaders {
            steward: steward.public().to_string(),
            ..foreign
        };
        assert_eq!(
            check(&transplanted, &stewards),
            Err(AuthError::BadSignature)
        );
        // Too old and too far ahead.
        for skew in [-(MAX_SKEW_MS as i64) - 2000, MAX_SKEW_MS as i64 + 2000] {
            let stale = StewardRequest {
                timestamp_ms: (NOW as i64 + skew) as u64,
                ..request(body)
            }
            .sign(&steward);
            assert!(
                matches!(check(&stale, &stewards), Err(AuthError::Stale { .. })),
                "skew {skew}"
            );
        }
    }

    #[test]
    fn the_canonical_bytes_are_as_documented() {
        let bytes = request(b"{}").to_bytes();
        let mut expected = b"harambee.steward-request.v1\0".to_vec();
        for part in ["fed-1", "POST", "/api/admin/remove"] {
            expected.extend_from_slice(&(part.len() as u32).to_le_bytes());
            expected.extend_from_slice(part.as_bytes());
        }
        expected.extend_from_slice(
            &hex::decode("44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a")
                .unwrap(),
        );
        expected.extend_from_slice(&NOW.to_le_bytes());
        expected.extend_from_slice(&[9; 16]);
        assert_eq!(bytes, expected);
    }
}

mod shapes {
    //! The JSON the API promises in docs/api.md, field by field.
    use harambee_dashboard::api::{
        ChartPoint, CurrentRound, Member, MemberState, Overview, Phase, RoundRow,
    };
    use serde_json::json;

    fn round() -> CurrentRound {
        CurrentRound {
            phase: Phase::Training,
            round: 3,
            rounds: 10,
            attempt: 0,
            selected: vec![0, 2],
            received: 1,
            quorum: 2,
            deadline_ms: Some(1_750_000_060_000),
            paused: false,
            error: None,
        }
    }

    #[test]
    fn the_overview_serialises_as_documented() {
        let overview = Overview {
            round: round(),
            members: vec![Member {
                id: 2,
                name: "community-2".into(),
                public_key: "ab".repeat(32),
                role: None,
                state: MemberState::Uploaded,
                last_seen_ms: Some(1_750_000_001_000),
                waiting: false,
            }],
            head: None,
            privacy: None,
            rounds_completed: 2,
        };
        assert_eq!(
            serde_json::to_value(&overview).unwrap(),
            json!({
                "round": {
                    "phase": "training", "round": 3, "rounds": 10, "attempt": 0,
                    "selected": [0, 2], "received": 1, "quorum": 2,
                    "deadline_ms": 1_750_000_060_000u64, "paused": false, "error": null
                },
                "members": [{
                    "id": 2, "name": "community-2", "public_key": "ab".repeat(32),
                    "role": null, "state": "uploaded", "last_seen_ms": 1_750_000_001_000u64,
                    "waiting": false
                }],
                "head": null,
                "privacy": null,
                "rounds_completed": 2
            })
        );
        let back: Overview =
            serde_json::from_value(serde_json::to_value(&overview).unwrap()).unwrap();
        assert_eq!(back, overview);
    }

    #[test]
    fn every_state_and_phase_has_its_lower_case_name() {
        let states = [
            (MemberState::Idle, "idle"),
            (MemberState::Training, "training"),
            (MemberState::Uploaded, "uploaded"),
            (MemberState::Dropped, "dropped"),
            (MemberState::Removed, "removed"),
        ];
        for (state, name) in states {
            assert_eq!(serde_json::to_value(state).unwrap(), json!(name));
        }
        let phases = [
            (Phase::Waiting, "waiting"),
            (Phase::Training, "training"),
            (Phase::Paused, "paused"),
            (Phase::Finished, "finished"),
            (Phase::Failed, "failed"),
        ];
        for (phase, name) in phases {
            assert_eq!(serde_json::to_value(phase).unwrap(), json!(name));
        }
    }

    #[test]
    fn a_chart_point_is_a_round_row_without_the_digests() {
        let row = RoundRow {
            round: 4,
            contributors: 3,
            train_loss: 0.25,
            accuracy: None,
            validation_loss: Some(2.0),
            global_digest: "00".repeat(32),
            epsilon: Some(1.5),
        };
        assert_eq!(
            serde_json::to_value(ChartPoint::from(&row)).unwrap(),
            json!({"round": 4, "accuracy": null, "train_loss": 0.25, "validation_loss": 2.0})
        );
    }

    #[test]
    fn admin_bodies_refuse_unknown_fields() {
        use harambee_dashboard::api::RemoveRequest;
        assert!(serde_json::from_str::<RemoveRequest>(r#"{"participant": 1}"#).is_ok());
        assert!(
            serde_json::from_str::<RemoveRequest>(r#"{"participant": 1, "everyone": true}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<RemoveRequest>(r#"{"participant": -1}"#).is_err());
    }
}

mod metrics {
    //! The exposition a Prometheus scrape gets.
    use std::time::Duration;

    use harambee_dashboard::{Gauges, Metrics, RefusalReason};

    /// A metric's value in a scrape's `text`.
    pub(crate) fn sample(text: &str, name: &str) -> f64 {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn what_was_recorded_is_what_a_scrape_reads() {
        let m = Metrics::new();
        m.rounds_completed_before(2);
        m.round_completed(Duration::from_millis(1500));
        m.aggregated(Duration::from_millis(3));
        m.update_accepted();
        m.update_accepted();
        m.update_refused(RefusalReason::Replay);
        m.update_refused(RefusalReason::BadSignature);
        m.update_refused(RefusalReason::BadSignature);
        m.received(1000);
        m.sent(250);
        let text = m.encode(&Gauges {
            connected: 3,
            enrolled: 4,
            ledger_entries: 17,
            round: 4,
            paused: true,
        });
        for (name, value) in [
            ("harambee_rounds_completed_total", 3.0),
            ("harambee_round_duration_seconds_count", 1.0),
            ("harambee_round_duration_seconds_sum", 1.5),
            ("harambee_aggregation_seconds_count", 1.0),
            ("harambee_updates_accepted_total", 2.0),
            ("harambee_updates_refused_total{reason=\"replay\"}", 1.0),
            (
                "harambee_updates_refused_total{reason=\"bad_signature\"}",
                2.0,
            ),
            (
                "harambee_updates_refused_total{reason=\"rate_limited\"}",
                0.0,
            ),
            ("harambee_received_bytes_total", 1000.0),
            ("harambee_sent_bytes_total", 250.0),
            ("harambee_participants_connected", 3.0),
            ("harambee_participants_enrolled", 4.0),
            ("harambee_ledger_entries", 17.0),
            ("harambee_round", 4.0),
            ("harambee_paused", 1.0),
        ] {
            assert_eq!(sample(&text, name), value, "{name}");
        }
        assert!(text.contains("# TYPE harambee_updates_refused_total counter"));
        assert!(Metrics::CONTENT_TYPE.starts_with("text/plain; version=0.0.4"));
    }

    #[test]
    fn every_metric_the_sample_grafana_dashboard_queries_exists() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/grafana-dashboard.json"
        );
        let dashboard = std::fs::read_to_string(path).unwrap();
        let exposed = Metrics::new().encode(&Gauges::default());
        let mut queried = 0;
        for (at, _) in dashboard.match_indices("harambee_") {
            let name: String = dashboard[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            queried += 1;
            assert!(
                exposed
                    .lines()
                    .any(|l| l.starts_with(&format!("{name} "))
                        || l.starts_with(&format!("{name}{{"))),
                "{name} is queried by deploy/grafana-dashboard.json but not exposed"
            );
        }
        assert!(queried >= 10, "{queried}");
    }
}

mod http {
    //! The HTTP server against hostile clients: foreign host names, stalled headers, slow
    //! answers, floods of connections. Raw sockets to 127.0.0.1 only.
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use harambee_dashboard::api::{
        AdminReply, CurrentRound, FederationInfo, Overview, Phase, RoundDetail, RoundRow,
    };
    use harambee_dashboard::{
        AdminError, Authorised, DashboardOptions, FederationView, Gauges, Metrics, StewardAction,
        ViewError, serve_with,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::task::JoinHandle;

    /// A federation that answers its overview at once and its description after `slow`.
    struct Federation {
        slow: Duration,
    }

    impl FederationView for Federation {
        fn federation(&self) -> Result<FederationInfo, ViewError> {
            std::thread::sleep(self.slow);
            Err(ViewError("not in this test".into()))
        }
        fn overview(&self) -> Result<Overview, ViewError> {
            Ok(Overview {
                round: CurrentRound {
                    phase: Phase::Waiting,
                    round: 0,
                    rounds: 3,
                    attempt: 0,
                    selected: Vec::new(),
                    received: 0,
                    quorum: 1,
                    deadline_ms: None,
                    paused: false,
                    error: None,
                },
                members: Vec::new(),
                head: None,
                privacy: None,
                rounds_completed: 0,
            })
        }
        fn rounds(&self) -> Result<Vec<RoundRow>, ViewError> {
            Ok(Vec::new())
        }
        fn round(&self, _: u64) -> Result<Option<RoundDetail>, ViewError> {
            Ok(None)
        }
        fn gauges(&self) -> Result<Gauges, ViewError> {
            Ok(Gauges::default())
        }
        fn apply(&self, _: &StewardAction, _: &Authorised) -> Result<AdminReply, AdminError> {
            Err(AdminError::Unavailable("not in this test".into()))
        }
    }

    /// A dashboard on a free loopback port; dropping it stops the server.
    struct Dashboard {
        addr: std::net::SocketAddr,
        metrics: Metrics,
        task: JoinHandle<std::io::Result<()>>,
    }

    impl Drop for Dashboard {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    async fn start(options: DashboardOptions, slow: Duration) -> Dashboard {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Metrics::new();
        let view = Arc::new(Federation { slow });
        let task = tokio::spawn(serve_with(listener, view, metrics.clone(), options));
        Dashboard {
            addr,
            metrics,
            task,
        }
    }

    impl Dashboard {
        /// A metric's value as a scrape reads it.
        fn metric(&self, name: &str) -> f64 {
            crate::metrics::sample(&self.metrics.encode(&Gauges::default()), name)
        }
    }

    /// Everything the server sends until it closes, or until `within` passes (then `None`).
    async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Err(_) => return None,
                Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// `request` sent on a fresh connection; the status and the whole answer.
    async fn exchange(dashboard: &Dashboard, request: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(dashboard.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_until_closed(&mut stream, Duration::from_secs(30))
            .await
            .expect("an answer, then the connection closed");
        let status = answer
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
        (status, answer)
    }

    fn get(path: &str, host: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
    }

    // Before, any Host was served: a page on a name its author rebinds to 127.0.0.1 could
    // read the federation's state from a steward's browser (DNS rebinding).
    #[tokio::test]
    async fn a_request_naming_a_foreign_host_is_refused_against_dns_rebinding() {
        let options = DashboardOptions {
            allowed_hosts: vec!["Dashboard.Example.org".into(), "proxy.example:8443".into()],
            ..DashboardOptions::default()
        };
        let dashboard = start(options, Duration::ZERO).await;
        let port = dashboard.addr.port();
        for host in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("LOCALHOST:{port}"),
            "dashboard.example.org".into(),
            "dashboard.example.org:9999".into(),
            "proxy.example:8443".into(),
        ] {
            let (status, answer) = exchange(&dashboard, &get("/api", &host)).await;
            assert_eq!(status, 200, "Host: {host}\n{answer}");
        }
        for host in [
            "evil.example".to_string(),
            format!("evil.example:{port}"),
            format!("127.0.0.1:{}", port.wrapping_add(1)),
            "127.0.0.1".into(),
            format!("127.0.0.2:{port}"),
            format!("localhost.evil.example:{port}"),
            "proxy.example:8444".into(),
            "proxy.example".into(),
            format!("127.0.0.1:{port}:1"),
        ] {
            let (status, answer) = exchange(&dashboard, &get("/api", &host)).await;
            assert_eq!(status, 421, "Host: {host}\n{answer}");
            assert!(
                answer.contains(&format!("It answers to: 127.0.0.1:{port}, localhost:{port}, dashboard.example.org, proxy.example:8443."))
                    && answer.contains("http_allowed_hosts"),
                "the refusal says what is accepted and how to allow more:\n{answer}"
            );
        }
        // The absolute form names its host in the request line: that one must pass too.
        let absolute = format!(
            "GET http://evil.example/api HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(exchange(&dashboard, &absolute).await.0, 421);
        let no_host = "GET /api HTTP/1.1\r\nConnection: close\r\n\r\n";
        let (status, answer) = exchange(&dashboard, no_host).await;
        assert_eq!(status, 421, "{answer}");
        assert!(answer.contains("no Host header"), "{answer}");
        let two = format!(
            "GET /api HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(exchange(&dashboard, &two).await.0, 421);
        // An operator's typo is refused at start, not silently never matched.
        for bad in ["http://dashboard.example.org", "", "a b", "host:port"] {
            let options = DashboardOptions {
                allowed_hosts: vec![bad.into()],
                ..DashboardOptions::default()
            };
            assert!(options.validate().is_err(), "{bad:?}");
        }
    }

    // Before, half a header line held its connection and task for ever (slowloris), and so
    // did a connection that sent nothing.
    #[tokio::test]
    async fn a_client_that_stalls_in_its_headers_is_disconnected() {
        let dashboard = start(DashboardOptions::default(), Duration::ZERO).await;
        let started = Instant::now();
        let mut half = TcpStream::connect(dashboard.addr).await.unwrap();
        half.write_all(b"GET /api HTTP/1.1\r\nHo").await.unwrap();
        let mut silent = TcpStream::connect(dashboard.addr).await.unwrap();
        // Answered once, then idle: kept alive no longer than the header timeout either.
        let mut idle = TcpStream::connect(dashboard.addr).await.unwrap();
        let once = format!("GET /api HTTP/1.1\r\nHost: {}\r\n\r\n", dashboard.addr);
        idle.write_all(once.as_bytes()).await.unwrap();
        let bound = Duration::from_secs(15);
        let (half_closed, silent_closed, idle_closed) = tokio::join!(
            read_until_closed(&mut half, bound),
            read_until_closed(&mut silent, bound),
            read_until_closed(&mut idle, bound)
        );
        eprintln!(
            "stalled connections closed after {:?} (header timeout {:?})",
            started.elapsed(),
            harambee_dashboard::HEADER_TIMEOUT
        );
        assert!(half_closed.is_some(), "half a header line still held open");
        assert!(
            silent_closed.is_some(),
            "a silent connection still held open"
        );
        let idle_closed = idle_closed.expect("an idle kept-alive connection still held open");
        assert!(idle_closed.starts_with("HTTP/1.1 200"), "{idle_closed}");
        // The server still answers.
        let host = dashboard.addr.to_string();
        assert_eq!(exchange(&dashboard, &get("/api", &host)).await.0, 200);
    }

    // Before, no request had a time limit: a coordinator that could not answer held every
    // connection that asked. The live stream must not be cut by that limit.
    #[tokio::test]
    async fn a_slow_answer_times_out_but_the_live_stream_stays_open() {
        let options = DashboardOptions {
            request_timeout: Duration::from_secs(1),
            ..DashboardOptions::default()
        };
        let dashboard = start(options, Duration::from_secs(4)).await;
        let host = dashboard.addr.to_string();
        let started = Instant::now();
        let (status, answer) = exchange(&dashboard, &get("/api/federation", &host)).await;
        eprintln!("slow answer cut after {:?}", started.elapsed());
        assert_eq!(status, 503, "{answer}");
        assert!(answer.contains("not answered within 1 s"), "{answer}");

        let mut live = TcpStream::connect(dashboard.addr).await.unwrap();
        let request = format!("GET /api/events HTTP/1.1\r\nHost: {host}\r\n\r\n");
        live.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("event: overview") {
            let n = tokio::time::timeout(Duration::from_secs(30), live.read(&mut buf))
                .await
                .expect("the first event")
                .unwrap();
            assert!(n > 0, "closed before the first event: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        // Three request timeouts later the stream is still open.
        let later = read_until_closed(&mut live, Duration::from_secs(3)).await;
        assert_eq!(later, None, "the live stream was closed");
    }

    // Before, every connection was served: a flood of idle or live ones took the
    // coordinator's tasks, memory and file descriptors without end.
    #[tokio::test]
    async fn connections_over_the_cap_are_closed_and_the_cap_recovers() {
        const CAP: usize = 4;
        let options = DashboardOptions {
            max_connections: CAP,
            header_timeout: Duration::from_secs(60),
            ..DashboardOptions::default()
        };
        let dashboard = start(options, Duration::ZERO).await;
        let host = dashboard.addr.to_string();
        let keep_alive = format!("GET /api HTTP/1.1\r\nHost: {host}\r\n\r\n");
        // Fill the cap with kept-alive connections, each answered once, so each is served.
        let mut held = Vec::new();
        for _ in 0..CAP {
            let mut stream = TcpStream::connect(dashboard.addr).await.unwrap();
            stream.write_all(keep_alive.as_bytes()).await.unwrap();
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            held.push(stream);
        }
        assert_eq!(dashboard.metric("harambee_http_connections"), CAP as f64);
        // Three times as many again: each is closed promptly, none is served.
        let flood = 3 * CAP;
        for _ in 0..flood {
            let mut extra = TcpStream::connect(dashboard.addr).await.unwrap();
            let _ = extra.write_all(keep_alive.as_bytes()).await;
            let answer = read_until_closed(&mut extra, Duration::from_secs(10))
                .await
                .expect("a connection over the cap is closed");
            assert!(
                answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
                "{answer}"
            );
            assert!(dashboard.metric("harambee_http_connections") <= CAP as f64);
        }
        assert_eq!(
            dashboard.metric("harambee_http_connections_refused_total"),
            flood as f64
        );
        // Once the held ones close, a fresh request is served again.
        drop(held);
        let started = Instant::now();
        loop {
            let mut stream = TcpStream::connect(dashboard.addr).await.unwrap();
            stream
                .write_all(get("/api", &host).as_bytes())
                .await
                .unwrap();
            let answer = read_until_closed(&mut stream, Duration::from_secs(10)).await;
            if answer.is_some_and(|a| a.starts_with("HTTP/1.1 200")) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "the cap did not recover"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!("the cap recovered after {:?}", started.elapsed());
        let deadline = Instant::now() + Duration::from_secs(15);
        while dashboard.metric("harambee_http_connections") > 0.0 {
            assert!(Instant::now() < deadline, "connections still counted open");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
