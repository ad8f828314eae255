#!/usr/bin/env python3
"""Speaks text with SVOX Pico (Debian's libttspico, non-free: `make setup` unpacks it under
$SIGHTLINE_MBROLA/root) and writes 16 kHz mono 16-bit PCM, headerless, to stdout. Evaluation speech
only: a second synthesiser beside espeak-ng, with its own voices for en-US, en-GB, de-DE, es-ES
and fr-FR.

Drives the library with ctypes (pico2wave, Debian's command, reads its voices from a fixed
/usr/share path and needs libpopt).

Usage: pico-say.py ROOT LANG SPEED TEXT
ROOT: where the packages were unpacked (holds usr/lib/x86_64-linux-gnu/libttspico.so.0 and
usr/share/pico/lang); LANG: en-US, en-GB, de-DE, es-ES, fr-FR, it-IT; SPEED: percent of Pico's
own rate (20..500).
"""
import ctypes
import os
import sys

# Each language's text analysis and signal generation files (the speaker in the second name).
VOICES = {
    "en-US": ("en-US_ta.bin", "en-US_lh0_sg.bin"),
    "en-GB": ("en-GB_ta.bin", "en-GB_kh0_sg.bin"),
    "de-DE": ("de-DE_ta.bin", "de-DE_gl0_sg.bin"),
    "es-ES": ("es-ES_ta.bin", "es-ES_zl0_sg.bin"),
    "fr-FR": ("fr-FR_ta.bin", "fr-FR_nk0_sg.bin"),
    "it-IT": ("it-IT_ta.bin", "it-IT_cm0_sg.bin"),
}
MEMORY = 2_500_000
STEP_BUSY, STEP_IDLE = 201, 200
VOICE = b"SightlineVoice"


def main():
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    root, lang, speed, text = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    if lang not in VOICES:
        raise SystemExit(f"pico-say: no voice for {lang!r} (have {', '.join(VOICES)})")
    if not 20 <= speed <= 500:
        raise SystemExit(f"pico-say: speed {speed} is outside 20..500")
    lib = ctypes.CDLL(os.path.join(root, "usr/lib/x86_64-linux-gnu/libttspico.so.0"))
    i16 = ctypes.c_int16

    def check(status, what):
        if status != 0:
            raise SystemExit(f"pico-say: {what} failed ({status})")

    memory = ctypes.create_string_buffer(MEMORY)
    system = ctypes.c_void_p()
    check(lib.pico_initialize(memory, ctypes.c_uint32(MEMORY), ctypes.byref(system)), "initialising")
    names = []
    for f in VOICES[lang]:
        path = os.path.join(root, "usr/share/pico/lang", f)
        if not os.path.exists(path):
            raise SystemExit(f"pico-say: {path} is missing (run `make setup`)")
        resource = ctypes.c_void_p()
        check(lib.pico_loadResource(system, path.encode(), ctypes.byref(resource)), f"loading {f}")
        name = ctypes.create_string_buffer(200)
        check(lib.pico_getResourceName(system, resource, name), f"naming {f}")
        names.append(name.value)
    check(lib.pico_createVoiceDefinition(system, VOICE), "defining the voice")
    for name in names:
        check(lib.pico_addResourceToVoiceDefinition(system, VOICE, name), "adding a resource")
    engine = ctypes.c_void_p()
    check(lib.pico_newEngine(system, VOICE, ctypes.byref(engine)), "starting the engine")
    # Pico's markup sets the rate; the trailing NUL flushes the last sentence.
    data = f'<speed level="{speed}">{text}</speed>'.encode() + b"\0"
    out = bytearray()
    buf = ctypes.create_string_buffer(4096)
    received, kind, put = i16(), i16(), i16()
    at = 0
    while at < len(data):
        chunk = data[at:at + 8000]
        check(lib.pico_putTextUtf8(engine, chunk, i16(len(chunk)), ctypes.byref(put)), "putting text")
        at += put.value
        while True:
            status = lib.pico_getData(engine, buf, i16(len(buf)), ctypes.byref(received), ctypes.byref(kind))
            out += buf.raw[:received.value]
            if status != STEP_BUSY:
                break
    sys.stdout.buffer.write(out)


if __name__ == "__main__":
    main()
