#!/bin/sh
# Make the dialguard prompts from their texts: asterisk-conf/sounds/<lang>/dialguard-*.txt -> .wav
# (8 kHz, mono, 16-bit: what Asterisk plays without transcoding). Needs espeak-ng and sox (Debian:
# apt-get install espeak-ng sox). Replace any .wav with a studio recording of the same name.
set -eu
cd "$(dirname "$0")/../asterisk-conf/sounds"
voice() {
    case "$1" in
        en) echo en-us ;; es) echo es ;; pl) echo pl ;; ru) echo ru ;; zh) echo cmn ;; *) echo "$1" ;;
    esac
}
for txt in */dialguard-*.txt; do
    lang=${txt%%/*}
    wav=${txt%.txt}.wav
    espeak-ng -v "$(voice "$lang")" -s 150 -w /tmp/dialguard-prompt.wav -f "$txt"
    sox /tmp/dialguard-prompt.wav -r 8000 -c 1 -b 16 "$wav"
    echo "$wav"
done
rm -f /tmp/dialguard-prompt.wav
