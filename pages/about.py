"""About and help: every control in musicians' words, and the credits."""

from __future__ import annotations

import streamlit as st

from melodygen import studio
from melodygen.render import audio_available

if not st.session_state.get("studio_routed"):  # opened before app.py ran: go through it
    st.session_state["studio_target"] = "pages/about.py"
    st.switch_page("app.py")

st.title("About and help")
st.markdown(
    """
MelodyGen writes melodies with neural networks trained on folk and pop tunes. You give
it a style, optionally a few opening notes, and some musical settings; it plays you
several different continuations to choose from.

### The Generate page

**Model.** *Style* is the music the network learned from. *Configuration* is the network
design (the ones on this server are listed below). The line under the pickers describes
the chosen model; the Models page shows how it was trained and how well it does.

**Primer.** The opening the model continues.
- *Nothing*: the model starts on its own.
- *Typed notes*: note names with octaves, `C4` is middle C. `C4 E4 G4:2 r:2 | C5 - -`
  is C, E, an eighth-note G, an eighth rest, then a high C held for three beats. `:N` is a
  length in sixteenths (`:4` a quarter, the default; `:8` a half note), `r` is a rest,
  `-` holds one more beat, `|` bar lines are only for you. The notes are checked, and
  their piano roll drawn, when you press *Check notes* (or Ctrl+Enter) or **Generate**;
  a click on Generate right after typing uses what you typed.
- *MIDI file*: upload a MIDI (`.mid`) or MusicXML (`.musicxml`, `.mxl`) file (up to 1
  MB), pick the track that carries the tune (drum tracks and dense chord clusters are not
  offered) and how many bars to use. Chords are reduced to their top note. The file's
  tempo becomes the tempo setting; its meter and key signature are kept, and a pickup
  stays on its beat. Audio files (`.wav`, `.mp3`) hold sound, not notes: export MIDI or
  MusicXML from the program that made them.

The primer's piano roll is shown before you generate, so you can check it, with its
length, its key (from the file's key signature, or estimated from the notes), and a line
if the model will move notes by octaves to fit its range.

**Music.** Nothing is generated until you press **Generate**.
- *Key* and *Mode*: the key of the result (major, minor, dorian, pentatonic, ...). *Auto*
  keeps the primer's key and mode (C major or A minor without a primer).
- *Stay in scale*: only notes of that key and mode are used: no accidentals.
- *Tempo (BPM)*: quarter notes per minute, for the audio and the MIDI files.
- *Meter*: the time signature: the primer's (*From primer*; 4/4 for typed notes unless
  they start with one, like `3/4 D4 F#4 A4`), or 4/4, 3/4, 6/8, 2/4. The models were
  trained counting in 4/4; in 3/4 and 6/8 their phrases repeat a little less neatly.
- *Length in bars*: the whole melody, primer included, in bars of the meter (at most 64).
- *Seed*: a number that fixes the dice. The same seed and settings give the same
  melodies again; leave it empty for new ones every time (the seed used is shown with the
  results, so a melody you like can always be made again).
- *Temperature*: how adventurous the model is. Around 0.7 it plays it safe and repeats
  itself; 1.0 is as it learned; above 1.3 it gets wild.
- *Variations*: how many different melodies to make at once (1 to 8).
- *Form* (models that can follow one): the tune's sections, such as AABB (a jig's two
  8-bar parts, each played twice) or AABA; *free* lets the model wander as it likes. The
  form sets the length. *Section bars*: 4 or 8 bars a section. A repeated section is
  played note for note, unless *Vary repeats* is on: then it keeps its first half and
  the model writes its end again, like first and second endings. The tune ends on the
  key's note. The piano roll and the score mark where each section starts.

**Advanced.**
- *Beam size*, *Branch factor*, *Steps per iteration*: instead of rolling the dice once,
  keep several candidate melodies, extend each in a few ways every few steps and keep the
  most likely. Larger values give safer, more "typical" melodies and take longer.
- *Top-k*: only choose among the k most likely next notes (0 = no limit).
- *Top-p*: only choose among the most likely next notes that together make up this share
  of the probability (1 = no limit). Both cut off unlikely, odd notes.
- *Pitch range*: the lowest and highest note the melody may use.

**Results.** Each variation has a piano roll (bars numbered from 1, the primer shaded
in grey, new notes in blue, note names up the side), a player, and MIDI and WAV downloads.
*Download all* gives every file (MIDI, piano roll, WAV) and the settings in one zip.
A line under the results warns when the settings left the model almost no choice.
*Continue this one* makes that variation the primer of the next run, with the length
extended, so you can grow a tune step by step. *Instrument* changes the sound of the audio
and of the MIDI files without generating again.
"""
)

models = studio.discover_models()
designs = studio.model_designs(models)  # each in its family's words
if designs:
    lines = [f"- `{name}`: {words}" for name, words in designs]
    st.markdown("**Configurations on this server**\n" + "\n".join(lines))

ok, how = audio_available()
if ok:
    st.caption(f"Audio: {how}.")
else:
    st.warning(f"Audio is unavailable on this server: {how}.")

st.markdown("### Credits")
sources = studio.data_credits(models)
lines = []
for source in sources:  # the data the models here were trained on, as their cards say
    text = f"- **{source['name']}**"
    if source.get("licence"):
        text += f", licence {source['licence']}"
    if source.get("url"):
        text += f": {source['url']}"
    lines.append(text)
if not lines:
    lines.append(
        "- Data sets MelodyGen trains on: the **Nottingham** folk tunes, **POP909** and the "
        "folk tunebooks of the **music21** corpus (the models here do not name theirs)."
    )
st.markdown(
    "Training data of the models here:\n"
    + "\n".join(lines)
    + """
- Sound: the **TimGM6mb** General MIDI SoundFont by Tim Brechbill and David Bolton
  (GPL-2, from Debian's `timgm6mb-soundfont`; see `soundfonts/README.md`), played by
  **FluidSynth** (LGPL-2.1).
- The models re-implement Google Magenta's **Melody RNN** configurations (Apache-2.0).
"""
)
