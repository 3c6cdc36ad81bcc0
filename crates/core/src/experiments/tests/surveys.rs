//! `[[surveys]]`: survey waves with their timing, the shorthand, and every
//! mistake reported with its line and field.

use super::*;

/// `VALID_HASH` with `extra` appended; the line of `extra`'s first line.
fn with(extra: &str) -> (String, usize) {
    let base = VALID_HASH.trim_end();
    (format!("{base}\n\n{extra}"), base.lines().count() + 2)
}

#[test]
fn waves_with_their_timing() {
    let (src, _) = with(
        r#"[[surveys]]
instrument = "cbpp-community"
wave = "baseline"
when = "before_start"

[[surveys]]
instrument = "sus"
wave = "baseline"
when = "before_start"

[[surveys]]
instrument = "cbpp-community"
wave = "followup"
after_first_exposure = "14d"

[[surveys]]
instrument = "nps"
wave = "endline"
when = "at_end"

[[surveys]]
instrument = "umux-lite"
waves = ["pilot", "later"]
"#,
    );
    let s = spec(&src, "t.toml");
    let got: Vec<(&str, &str, WaveTiming)> = s
        .surveys
        .iter()
        .map(|w| (w.instrument.as_str(), w.wave.as_str(), w.timing))
        .collect();
    assert_eq!(
        got,
        [
            ("cbpp-community", "baseline", WaveTiming::BeforeStart),
            ("sus", "baseline", WaveTiming::BeforeStart),
            (
                "cbpp-community",
                "followup",
                WaveTiming::AfterFirstExposure {
                    seconds: 14 * 86_400
                }
            ),
            ("nps", "endline", WaveTiming::AtEnd),
            ("umux-lite", "pilot", WaveTiming::Unscheduled),
            ("umux-lite", "later", WaveTiming::Unscheduled),
        ]
    );
    assert_eq!(s.wave_instruments("baseline"), ["cbpp-community", "sus"]);
    assert!(s.wave_instruments("nope").is_empty());
    assert_eq!(s.surveys[2].timing.describe(), "14d after first exposure");
}

#[test]
fn every_mistake_with_its_line_and_field() {
    let (src, l) = with(
        r#"[[surveys]]
instrument = "cbpp-community"
wave = "baseline"
when = "before-start"

[[surveys]]
instrument = "cbpp-community"
wave = "followup"
after_first_exposure = "-2d"

[[surveys]]
instrument = "sus"
wave = "x"
when = "at_end"
after_first_exposure = "2d"

[[surveys]]
instrument = "Sus"
wave = "Follow Up"

[[surveys]]
instrument = "nps"

[[surveys]]
instrument = "nps"
wave = "w"
waves = ["w"]

[[surveys]]
instrument = "nps"
waves = ["a"]
when = "at_end"

[[surveys]]
instrument = "nps"
wave = "d"
after_first_exposure = "soon"
colour = "red"
"#,
    );
    let got = error_lines(&src, "t.toml");
    let want = [
        format!("t.toml:{}:8: surveys[0].when: \"before-start\" is not valid; expected one of: before_start, at_end", l + 3),
        format!("t.toml:{}:24: surveys[1].after_first_exposure: \"-2d\" is not after first exposure; expected a positive duration of at most 3650d", l + 8),
        format!("t.toml:{}:24: surveys[2].after_first_exposure: give either when or after_first_exposure, not both", l + 14),
        format!("t.toml:{}:14: surveys[3].instrument: \"Sus\" is not a valid key; expected lowercase letters, digits, '.', '_' or '-' (starting with a letter or digit, at most 64 characters)", l + 17),
        format!("t.toml:{}:8: surveys[3].wave: \"Follow Up\" is not a valid key; expected lowercase letters, digits, '.', '_' or '-' (starting with a letter or digit, at most 64 characters)", l + 18),
        format!("t.toml:{}:1: surveys[4].wave: missing required field; expected a wave key such as \"baseline\"", l + 20),
        format!("t.toml:{}:9: surveys[5].waves: give either wave (one wave with its timing) or waves (a list of unscheduled waves), not both", l + 26),
        format!("t.toml:{}:9: surveys[6].waves: a timing (when, after_first_exposure) needs one wave per [[surveys]] entry: use wave = \"...\"", l + 30),
        format!("t.toml:{}:24: surveys[7].after_first_exposure: expected a duration such as \"14d\", \"12h\" or \"30m\"; found a string", l + 36),
        format!("t.toml:{}:10: surveys[7].colour: unknown field; expected one of: instrument, wave, waves, when, after_first_exposure, trigger_flag", l + 37),
    ];
    assert_eq!(got, want);
}

#[test]
fn a_wave_is_one_time_and_gives_an_instrument_once() {
    let (src, l) = with(
        r#"[[surveys]]
instrument = "sus"
wave = "baseline"
when = "before_start"

[[surveys]]
instrument = "nps"
wave = "baseline"
after_first_exposure = "7d"

[[surveys]]
instrument = "sus"
wave = "baseline"
when = "before_start"
"#,
    );
    let got = error_lines(&src, "t.toml");
    assert_eq!(
        got,
        [
            format!("t.toml:{}:8: surveys[1].wave: wave \"baseline\" is before_start for \"sus\" but 7d after first exposure here; a wave is one point in time for every instrument", l + 7),
            format!("t.toml:{}:14: surveys[2].wave: instrument \"sus\" is given twice in wave \"baseline\"", l + 11),
        ]
    );
}

#[test]
fn a_wave_may_name_one_survey_trigger_flag() {
    let (src, _) = with(
        r#"[[surveys]]
instrument = "sus"
wave = "baseline"
when = "before_start"
trigger_flag = "survey-prompt"

[[surveys]]
instrument = "nps"
wave = "baseline"
when = "before_start"
trigger_flag = "survey-prompt"

[[surveys]]
instrument = "nps"
wave = "endline"
when = "at_end"
"#,
    );
    let s = spec(&src, "t.toml");
    assert_eq!(s.wave_trigger_flag("baseline"), Some("survey-prompt"));
    assert_eq!(s.wave_trigger_flag("endline"), None);
    assert_eq!(s.wave_trigger_flag("nope"), None);

    let (src, l) = with(
        r#"[[surveys]]
instrument = "sus"
wave = "baseline"
trigger_flag = "survey prompt"

[[surveys]]
instrument = "nps"
wave = "endline"
trigger_flag = 3

[[surveys]]
instrument = "sus"
wave = "endline"
trigger_flag = "another"

[[surveys]]
instrument = "umux-lite"
wave = "endline"
"#,
    );
    let got = error_lines(&src, "t.toml");
    assert_eq!(
        got,
        [
            format!("t.toml:{}:16: surveys[0].trigger_flag: flag key \"survey prompt\" contains ' ': a key is 1 to 200 ASCII letters, digits, '_', '-' or '.', starting with a letter, digit or '_'", l + 3),
            format!("t.toml:{}:16: surveys[1].trigger_flag: expected a flag key such as \"survey-prompt\"; found an integer", l + 8),
            format!("t.toml:{}:1: surveys[3].trigger_flag: wave \"endline\" has trigger_flag \"another\" for \"sus\" but none here; a wave has one survey-trigger flag", l + 15),
        ]
    );
}

#[test]
fn the_examples_name_their_waves() {
    let thanks = spec(THANKS, "thanks-button.toml");
    assert_eq!(thanks.wave_instruments("baseline"), ["cbpp-community"]);
    assert_eq!(
        thanks.surveys[1].timing,
        WaveTiming::AfterFirstExposure {
            seconds: 14 * 86_400
        }
    );
    let dash = spec(DASHBOARD, "value-dashboard.toml");
    assert_eq!(dash.wave_instruments("endline"), ["cbpp-community", "sus"]);
}

#[test]
fn campaigns_that_do_not_fit_their_wave_are_warned_about() {
    let t = spec(THANKS, "thanks-button.toml");
    let start = t.schedule.start;
    let day = 86_400;
    assert!(t
        .wave_timing_warnings("baseline", start - 10 * day, start)
        .is_empty());
    let w = t.wave_timing_warnings("baseline", start - 10 * day, start + day);
    assert_eq!(w.len(), 1);
    assert!(
        w[0].contains("due before the trial starts") && w[0].contains("after seeing their arm"),
        "{w:?}"
    );
    assert!(t
        .wave_timing_warnings("followup", start, start + 30 * day)
        .is_empty());
    let w = t.wave_timing_warnings("followup", start, start + 14 * day);
    assert!(
        w[0].contains("14d after each unit's first exposure"),
        "{w:?}"
    );
    let d = spec(DASHBOARD, "value-dashboard.toml");
    assert!(d
        .wave_timing_warnings("endline", d.schedule.end, d.schedule.end + 30 * day)
        .is_empty());
    let w = d.wave_timing_warnings("endline", d.schedule.end - day, d.schedule.end + 30 * day);
    assert!(w[0].contains("due when the trial ends"), "{w:?}");
    assert!(t.wave_timing_warnings("nope", 0, 1).is_empty());
}
