"""What the tests and benchmarks share: the emulator as a process (:mod:`.emulator`), config
files (:mod:`.config`), a clean environment for subprocesses (:mod:`.environment`), free
ports (:mod:`.net`) and the mirror compared with the emulator's truth (:mod:`.mirror`)."""
