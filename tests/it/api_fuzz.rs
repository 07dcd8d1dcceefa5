//! Property tests of the API from its own OpenAPI document, by schemathesis (PyPI; `.ci/run`
//! installs it) against a running `nightscape up`: requests made from the document, valid and
//! not, with every answer checked — no 5xx, and status codes, content types, headers and
//! bodies as documented. CI runs a few examples per operation; the full run is
//! `NIGHTSCAPE_API_FUZZ_EXAMPLES=200 cargo test --release --test it api_fuzz -- --nocapture`.

use crate::system::{free_port, http, login_as, scratch, spawn_up_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_unlike_the_document() {
    let data = scratch("api-fuzz");
    let up = spawn_up_with(&data, free_port(), &[]);
    let admin = login_as(&up.http, &up.password).await;
    let (status, reply) = http(
        &up.http,
        "POST",
        "/api/tokens",
        &admin,
        r#"{"label": "schemathesis", "days": 1}"#,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let token = crate::system::body_of(&reply)["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let examples = std::env::var("NIGHTSCAPE_API_FUZZ_EXAMPLES").unwrap_or_else(|_| "10".into());
    // schemathesis keeps a cache in its working directory: the scratch one, not the repo.
    let st_dir = data.with_extension("st");
    std::fs::create_dir_all(&st_dir).unwrap();
    let out = std::process::Command::new("st")
        .current_dir(&st_dir)
        .arg("run")
        .arg(format!("http://{}/api/openapi.json", up.http))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
            "--max-examples",
            &examples,
            // One worker: schemathesis's workers are threads, and CPython 3.11's `ast.parse`
            // from two threads at once can fail inside the tool ("AST constructor recursion
            // depth mismatch", CPython gh-106905), failing the run for nothing in the API.
            "--workers",
            "1",
            "--seed",
            "1",
            // Ending the token's session, deleting users and replacing the library would
            // stop the run from reaching the rest.
            "--exclude-path-regex",
            "/api/logout|/api/users/\\{name\\}$|/api/library/import",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("schemathesis's `st` (pip install schemathesis; .ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("generated") || l.contains("failures") || l.contains("passed"))
        .collect();
    eprintln!("{}", summary.join("\n"));
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(up);
    let _ = std::fs::remove_dir_all(&data);
}
