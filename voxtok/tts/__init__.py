"""CosyVoice-style text-to-speech: text frontend, speaker embeddings, LLM, flow matching and vocoder."""
