"""The voice channel: telephony audio, voice activity, speech-to-text and text-to-speech."""
