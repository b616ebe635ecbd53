from emulators.firestore.bench import main  # noqa: F401 - `make bench` runs main()
