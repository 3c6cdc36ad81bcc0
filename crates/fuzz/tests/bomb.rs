//! The `$ref` expansion bomb of issue #10 (each shared evaluator the `and`
//! of two references to the one before, 22 deep: 4 million nodes if
//! expanded) is refused at load, naming the evaluator, without building
//! it: the whole load allocates a few megabytes at most (measured by the
//! allocator of this test binary, which runs this one test). Before the
//! cost limits it took seconds and hundreds of megabytes (e20), and e22
//! aborted the process.

use commonlab_core::flags::{FlagSet, LoadMode};

#[global_allocator]
static ALLOC: cap::Cap<std::alloc::System> =
    cap::Cap::new(std::alloc::System, commonlab_fuzz::MEMORY_CAP);

const BOMB: &str = include_str!("__fuzz__/flag_texts/corpus/ref-bomb-e22.json");

#[test]
fn a_ref_bomb_is_refused_at_load_with_bounded_memory() {
    let before = ALLOC.allocated();
    for mode in [LoadMode::Lenient, LoadMode::Strict] {
        let err = FlagSet::from_json_str(BOMB, mode).map(|_| ()).unwrap_err();
        assert!(err.pointer.starts_with("/$evaluators/e"), "{err:?}");
        assert!(err.message.contains("cost"), "{err:?}");
    }
    let peak = ALLOC.max_allocated().saturating_sub(before);
    assert!(
        peak < 4 << 20,
        "the refused bomb took {peak} bytes at its peak"
    );
}
