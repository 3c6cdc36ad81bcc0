//! `analyze` on data brought from elsewhere: sufficient statistics and few-community rows.

use super::*;

/// `commonlab analyze` on per-arm sufficient statistics (docs/analyze.md):
/// the CLI prints exactly what the engine computes.
#[test]
fn analyze_sufficient_statistics() {
    let input = fixtures().join("analyze.json");
    let o = commonlab()
        .args(["analyze", "--input", input.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let text = std::fs::read_to_string(&input).unwrap();
    let expected =
        commonlab_stats::analyze::analyze(&commonlab_stats::analyze::parse_input(&text).unwrap());
    assert_eq!(out, serde_json::to_value(&expected).unwrap());
    // SRM: chi-square of 1000 vs 1012 against 1:1.
    let p = out["srm"]["p_value"].as_f64().unwrap();
    assert!((p - 0.789_063_599_989_265_7).abs() < 1e-9, "{p}");
    let two = &out["metrics"]["visits"]["comparisons"]["t1"]["absolute"]["two_sided"];
    assert!(
        two["p_value"].as_f64().unwrap() > 0.0
            && two["ci_lower"].as_f64() < two["ci_upper"].as_f64()
    );
    assert!(out["metrics"]["visits"]["comparisons"]["t1"]["cuped"]["theta"].is_number());

    let o = commonlab()
        .args([
            "analyze",
            "--input",
            input.to_str().unwrap(),
            "--format",
            "md",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("visits"));

    // A mistake in the input names the field.
    let dir = Scratch::new("bad-analyze");
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        text.replace("\"sum_squares\": 34000", "\"sum_sq\": 34000"),
    )
    .unwrap();
    let o = commonlab()
        .args(["analyze", "--input", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("sum_sq"), "{}", stderr(&o));
}

/// `commonlab analyze --design stepped_wedge` on CSV rows: a 4-community
/// stepped wedge has 24 possible orders, so exact randomisation inference
/// can never go below 1/24.
#[test]
fn analyze_few_community_rows() {
    let input = fixtures().join("wedge-rows.csv");
    let o = commonlab()
        .args([
            "analyze",
            "--input",
            input.to_str().unwrap(),
            "--design",
            "stepped_wedge",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let ri = &out["randomisation"]["result"];
    assert_eq!(ri["total_assignments"], 24);
    assert_eq!(ri["exact"], true);
    let min_p = ri["min_attainable_p"].as_f64().unwrap();
    assert!((min_p - 1.0 / 24.0).abs() < 1e-12, "{min_p}");
    assert!(ri["p_value"].as_f64().unwrap() >= min_p);
    assert_eq!(out["n_clusters"], 4);
    assert!(out["cr2"]["result"]["df"].as_f64().unwrap() > 0.0);
    assert_eq!(out["communities"].as_array().unwrap().len(), 4);
    // Community and period fixed effects by default (issue #10 item 27);
    // exact randomisation inference leads, with its floor stated.
    assert_eq!(out["model"], "value ~ 1 + period FE + cluster FE + treated");
    assert_eq!(out["lead"]["method"], "randomisation");
    assert_eq!(out["lead"]["reason"], "exact_enumeration");
    assert_eq!(out["lead"]["min_attainable_p"], ri["min_attainable_p"]);
    assert_eq!(out["cr2_lead"]["reason"], "community_fixed_effects");
    let run = |extra: &[&str]| {
        let mut args = vec!["analyze", "--input", input.to_str().unwrap()];
        args.extend_from_slice(&["--design", "stepped_wedge"]);
        args.extend_from_slice(extra);
        commonlab().args(args).output().unwrap()
    };
    // The model without community effects only on request.
    let o = run(&["--without-community-effects"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let pooled: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(pooled["model"], "value ~ 1 + period FE + treated");
    assert_ne!(pooled["estimate"], out["estimate"]);
    assert!(pooled["model_reason"]
        .as_str()
        .unwrap()
        .contains("on request"));
    // The old flag is accepted, does nothing, and says so.
    let o = run(&["--cluster-fixed-effects"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("does nothing"), "{}", stderr(&o));
    let same: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(same, out);
    let o = run(&["--cluster-fixed-effects", "--without-community-effects"]);
    assert_eq!(o.status.code(), Some(2), "contradictory flags are refused");

    // A bad cell is reported with its line and column name.
    let text = std::fs::read_to_string(&input).unwrap();
    let bad_text = text.replacen("\nwiki-a,0,0,", "\nwiki-a,0,0,x", 1);
    let dir = Scratch::new("bad-rows");
    let bad = dir.join("bad.csv");
    std::fs::write(&bad, bad_text).unwrap();
    let o = commonlab()
        .args([
            "analyze",
            "--input",
            bad.to_str().unwrap(),
            "--design",
            "cluster",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains(":2: column 'value'"), "{err}");
}

/// The ```json blocks of `docs/analyze-few.md`, in order.
fn json_examples_of_the_doc() -> Vec<String> {
    let doc = std::fs::read_to_string(workspace().join("docs/analyze-few.md")).unwrap();
    let mut blocks = Vec::new();
    let mut rest = doc.as_str();
    while let Some(start) = rest.find("\n```json\n") {
        let body = &rest[start + "\n```json\n".len()..];
        let end = body.find("\n```").expect("a closed block");
        blocks.push(body[..end + 1].to_string());
        rest = &body[end..];
    }
    blocks
}

/// Issue 12, item 5: `docs/analyze-few.md`'s JSON examples run as written
/// (`commonlab analyze --input wedge.json`), so the doc cannot drift from
/// what the command accepts; the result is the engine's on the same rows.
#[test]
fn the_json_examples_of_analyze_few_run_as_written() {
    let examples = json_examples_of_the_doc();
    assert!(
        !examples.is_empty(),
        "no ```json block in docs/analyze-few.md"
    );
    let dir = Scratch::new("doc-examples");
    for (i, example) in examples.iter().enumerate() {
        let input: commonlab_stats::rows::RowsInput = serde_json::from_str(example)
            .unwrap_or_else(|e| panic!("example {i} is not a rows document: {e}"));
        let expected = commonlab_stats::rows::analyze_rows(&input)
            .unwrap_or_else(|e| panic!("example {i} gives no result: {e}"));
        let expected = serde_json::to_value(&expected).unwrap();
        let file = dir.write("wedge.json", example);
        let o = dir
            .command()
            .args(["analyze", "--input", "wedge.json"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "example {i}: {}", stderr(&o));
        let out: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(out, expected, "example {i}");
        assert!(
            out["estimate"].is_number() && out["randomisation"]["result"]["p_value"].is_number(),
            "{out}"
        );
        // The Markdown form, standard input with --input-format, and
        // --design naming the document's kind.
        let o = dir
            .command()
            .args(["analyze", "--input", "wedge.json", "--format", "md"])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            stdout(&o).starts_with("# Few-community analysis"),
            "{}",
            stdout(&o)
        );
        let mut child = dir
            .command()
            .args(["analyze", "--input", "-", "--input-format", "json"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), example.as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap(),
            expected
        );
        let kind = input.design.kind;
        let kind = serde_json::to_value(kind).unwrap();
        let o = dir
            .command()
            .args([
                "analyze",
                "--input",
                file.to_str().unwrap(),
                "--design",
                kind.as_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
}

/// A JSON rows document's mistakes name the file, line, column and field
/// (the one the doc shows), and the flags that would change its design are
/// refused rather than ignored.
#[test]
fn a_json_rows_document_reports_mistakes_with_their_place() {
    let example = json_examples_of_the_doc().remove(0);
    let dir = Scratch::new("doc-mistakes");
    let fails = |args: &[&str]| {
        let o = dir.command().args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stdout(&o));
        stderr(&o)
    };
    let seventh = "\"period\": 1, \"treated\": false, \"value\": 2.61}";
    assert!(
        example.contains(seventh),
        "the doc's example changed: update this test"
    );
    dir.write(
        "wedge.json",
        &example.replacen("\"value\": 2.61", "\"value\": \"2.6\"", 1),
    );
    let err = fails(&["analyze", "--input", "wedge.json"]);
    assert!(
        err.contains("wedge.json:9:78: rows[6].value: invalid type: string \"2.6\", expected f64"),
        "{err}"
    );
    let doc = std::fs::read_to_string(workspace().join("docs/analyze-few.md")).unwrap();
    assert!(doc
        .contains("`wedge.json:9:78:\nrows[6].value: invalid type: string \"2.6\", expected f64`"));
    dir.write(
        "wedge.json",
        &example.replacen("\"seed\": 0", "\"sed\": 0", 1),
    );
    let err = fails(&["analyze", "--input", "wedge.json"]);
    assert!(
        err.contains("wedge.json:") && err.contains(": design.sed: unknown field `sed`"),
        "{err}"
    );
    dir.write("wedge.json", &example);
    for (flags, says) in [
        (
            &["--design", "cluster"][..],
            "--design cluster but the document's design.kind is \"stepped_wedge\"",
        ),
        (
            &["--seed", "3"],
            "--seed cannot change a JSON rows document",
        ),
        (&["--control-arm", "c"], "--control-arm cannot change"),
        (
            &["--design", "stepped_wedge", "--without-community-effects"],
            "--without-community-effects cannot change",
        ),
    ] {
        let mut args = vec!["analyze", "--input", "wedge.json"];
        args.extend_from_slice(flags);
        let err = fails(&args);
        assert!(err.contains(says), "{flags:?}: {err}");
    }
    // CSV without a design, and a JSON file that is neither document.
    dir.write("rows.csv", "cluster,period,treated,value\na,0,0,1\n");
    assert!(fails(&["analyze", "--input", "rows.csv"]).contains("CSV rows need --design"));
    dir.write("stats.json", "{\"arms\": []}");
    let err = fails(&["analyze", "--input", "stats.json", "--design", "cluster"]);
    assert!(
        err.contains("with --design, JSON input is a rows document"),
        "{err}"
    );
}
