"""`python -m bench` (or `make bench`): every benchmark, one report each."""

from bench import edit_scheduler, engine_turns

if __name__ == "__main__":
    engine_turns.main()
    print()
    edit_scheduler.main()
