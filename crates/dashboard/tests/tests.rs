//! The dashboard's pure parts: the steward-signed request scheme, the JSON shapes, metrics.
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

    fn sample(text: &str, name: &str) -> f64 {
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
