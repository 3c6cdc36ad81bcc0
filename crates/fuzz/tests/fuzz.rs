//! The fuzz targets of `commonlab_fuzz`, run by `bolero`: each on its kept
//! corpus (`tests/__fuzz__/fuzz/<target>/corpus/`) and then on generated
//! inputs for a bounded time (1 s by default; CI sets
//! `BOLERO_RANDOM_TEST_TIME_MS=60000`), under an allocator capped at
//! `MEMORY_CAP`. A failure prints the input and its `BOLERO_RANDOM_SEED`
//! to replay it.

use bolero::check;
use commonlab_fuzz::*;

#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, MEMORY_CAP);

#[test]
fn flag_documents() {
    check!()
        .with_type::<FlagDocument>()
        .with_max_depth(6)
        .for_each(flag_document);
}

#[test]
fn flag_texts() {
    check!().for_each(|bytes: &[u8]| flag_text(&String::from_utf8_lossy(bytes)));
}

#[test]
fn trial_files() {
    check!()
        .with_type::<Mutation>()
        .for_each(|m| trial_file(&m.apply(TRIAL_SEEDS)));
}

#[test]
fn survey_files() {
    check!()
        .with_type::<Mutation>()
        .for_each(|m| survey_file(&m.apply(SURVEY_SEEDS)));
}

#[test]
fn event_batches() {
    check!()
        .with_type::<BatchInput>()
        .with_max_depth(6)
        .for_each(event_batch);
}

#[test]
fn event_bodies() {
    check!().for_each(|bytes: &[u8]| {
        event_body(false, bytes);
        event_body(true, bytes);
    });
}

#[test]
fn survey_answer_sets() {
    check!()
        .with_type::<AnswersInput>()
        .with_max_depth(6)
        .for_each(survey_answers);
}

#[test]
fn survey_answer_texts() {
    check!().for_each(|bytes: &[u8]| survey_answers_text(&String::from_utf8_lossy(bytes)));
}
