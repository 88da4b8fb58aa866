"""Neural-network layers shared by every model: FiLM, dense blocks, encoders, decoders
(`layers`), the concrete gene selector (`concrete`) and bag pooling (`pooling`)."""
