//! [`super::PrometheusSource`] against an in-process fake Prometheus that answers each
//! query with a canned response: what the judge gets from NaN, empty results, warnings,
//! `bad_data`, a slow server and a closed port.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// Serve `respond(body of the request)` -> (status, JSON, delay) on a loopback port.
async fn fake(respond: impl Fn(&str) -> (u16, String, Duration) + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let respond = respond.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read headers, then the body by content-length.
                let body = loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break body.to_string();
                        }
                    }
                };
                let (status, json, delay) = respond(&body);
                tokio::time::sleep(delay).await;
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                    json.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://127.0.0.1:{}", addr.port())
}

fn vector(v: &str) -> String {
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1700000000.1,"{v}"]}}]}}}}"#
    )
}

fn source(url: &str) -> PrometheusSource {
    let release = crate::release::load_str(
        std::path::Path::new("t.toml"),
        "[release]\nname = \"r\"\n[metrics]\nprovider = \"prometheus\"\nurl = \"http://x\"\n[[service]]\nname = \"api\"\nstrategy = \"canary\"\nsteps = [{ set_weight = 10 }, { analysis = \"1m\" }]\n[service.local]\nlisten = \"127.0.0.1:1\"\ncommand = [\"x\", \"{port}\"]\ncurrent = { revision = \"v1\" }\ntarget = { revision = \"v2\" }\n",
        std::path::Path::new("."),
    )
    .unwrap();
    let client = PrometheusClient::new(url, Vec::new(), Duration::from_millis(300));
    PrometheusSource::new(client, &release)
}

const HALF_SECOND: Duration = Duration::from_millis(500);

#[tokio::test]
async fn counts_come_from_the_three_queries() {
    let url = fake(|body| {
        let v = if body.contains("le%3D%220.5%22") {
            "7"
        } else if body.contains("5xx") {
            "3"
        } else {
            "120"
        };
        (200, vector(v), Duration::ZERO)
    })
    .await;
    let s = source(&url);
    let c = s.counters("api", "v2", HALF_SECOND).await.unwrap().unwrap();
    assert_eq!(
        c,
        RevisionCounters {
            requests: 120,
            errors_5xx: 3,
            connection_errors: 0,
            slow: 7
        }
    );
    assert!(s.absent_is_no_data() && s.fixed_slow_thresholds());
}

#[tokio::test]
async fn nan_empty_and_warnings_are_no_data() {
    for answer in [
        vector("NaN"),
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.to_string(),
        r#"{"status":"success","warnings":["remote read failed: partial"],"data":{"resultType":"vector","result":[{"metric":{},"value":[1,"5"]}]}}"#.to_string(),
    ] {
        let url = fake(move |_| (200, answer.clone(), Duration::ZERO)).await;
        let s = source(&url);
        assert_eq!(s.counters("api", "v2", HALF_SECOND).await.unwrap(), None);
    }
}

#[tokio::test]
async fn bad_data_is_an_error_that_names_the_server_and_the_problem() {
    let url = fake(|_| {
        (
            400,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error"}"#.into(),
            Duration::ZERO,
        )
    })
    .await;
    let e = source(&url)
        .counters("api", "v2", HALF_SECOND)
        .await
        .unwrap_err();
    assert!(
        e.message.contains("bad_data") && e.message.contains("parse error"),
        "{e}"
    );
    assert!(e.to_string().contains(&url), "{e}");
    let url = fake(|_| {
        (
            422,
            r#"{"status":"error","errorType":"execution","error":"query timed out"}"#.into(),
            Duration::ZERO,
        )
    })
    .await;
    let e = source(&url)
        .counters("api", "v2", HALF_SECOND)
        .await
        .unwrap_err();
    assert!(e.message.contains("HTTP 422: execution"), "{e}");
}

#[tokio::test]
async fn a_slow_server_or_a_closed_port_is_an_error() {
    let url = fake(|_| (200, vector("1"), Duration::from_secs(5))).await;
    let e = source(&url)
        .counters("api", "v2", HALF_SECOND)
        .await
        .unwrap_err();
    assert!(e.message.contains("timed out"), "{e}");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = source(&format!("http://127.0.0.1:{port}"))
        .counters("api", "v2", HALF_SECOND)
        .await
        .unwrap_err();
    assert!(e.message.contains("connect"), "{e}");
}

#[tokio::test]
async fn not_a_bucket_is_no_data_not_an_interpolation() {
    let url = fake(|_| (200, vector("9"), Duration::ZERO)).await;
    let s = source(&url);
    assert_eq!(
        s.counters("api", "v2", Duration::from_millis(333))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_range_query_reads_the_matrix() {
    let url = fake(|body| {
        assert!(body.contains("step=1"), "{body}");
        (
            200,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"revision":"v2"},"values":[[10,"1"],[11,"NaN"],[12,"3"]]}]}}"#.into(),
            Duration::ZERO,
        )
    })
    .await;
    let c = PrometheusClient::new(&url, Vec::new(), Duration::from_secs(2));
    let s = c
        .range("up", 10.0, 12.0, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(s[0].points, vec![(10.0, 1.0), (12.0, 3.0)]);
    let e = c
        .range("up", 0.0, 100_000.0, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(e.message.contains("11,000"), "{e}");
}

/// The sampler turns no data into no window and the analysis never passes on it.
#[tokio::test]
async fn the_judge_gets_no_window_from_no_data() {
    use crate::judge::{ArmSampler, SlowThreshold, ThresholdSource};
    let url = fake(|_| {
        (
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.into(),
            Duration::ZERO,
        )
    })
    .await;
    let slow = SlowThreshold {
        threshold: HALF_SECOND,
        source: ThresholdSource::MaxP99,
    };
    let mut sampler = ArmSampler::new(Arc::new(source(&url)), "api", "v1", "v2", slow);
    assert!(sampler.sample(0, 0.1).await.unwrap().is_none());
    assert!(sampler.sample(1000, 0.1).await.unwrap().is_none());
    let why = sampler.no_data().unwrap();
    assert!(
        why.contains("`prometheus` had no data for the baseline `v1` of `api`"),
        "{why}"
    );
}

#[tokio::test]
async fn credentials_never_reach_a_message() {
    let url = fake(|body| {
        (
            400,
            format!(
                r#"{{"status":"error","errorType":"bad_data","error":"cannot parse {}"}}"#,
                body.len()
            ),
            Duration::ZERO,
        )
    })
    .await;
    let with_user = url.replace("http://", "http://reader:s3cr3t-pw@");
    let headers = vec![(
        "authorization".to_string(),
        "Bearer t0k3n-value".to_string(),
    )];
    for base in [url.clone(), with_user.clone()] {
        let c = PrometheusClient::new(&base, headers.clone(), Duration::from_secs(2));
        let e = c.instant("up").await.unwrap_err().to_string();
        assert!(e.contains("bad_data"), "{e}");
        assert!(
            !e.contains("s3cr3t") && !e.contains("t0k3n") && !e.contains("reader"),
            "{e}"
        );
        assert!(!format!("{c:?}").contains("t0k3n"));
    }
    // A closed port: the transport's message names the server without its credentials.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = PrometheusClient::new(
        &format!("http://reader:s3cr3t-pw@127.0.0.1:{port}"),
        headers,
        Duration::from_secs(2),
    );
    let e = c.instant("up").await.unwrap_err().to_string();
    assert!(
        e.contains(&format!("127.0.0.1:{port}")) && !e.contains("s3cr3t"),
        "{e}"
    );
}
