"""The local Firestore emulator: ``python -m emulators.firestore`` or ``launcher.start_firestore``."""
