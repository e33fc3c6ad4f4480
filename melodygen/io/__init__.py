"""Music files in and out: MIDI, ABC and MusicXML read into NoteSequences and melodies, and
primers (typed notes or a file) for generation."""
