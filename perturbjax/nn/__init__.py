"""Neural-network layers shared by every model (FiLM, dense blocks, encoders, decoders)."""
