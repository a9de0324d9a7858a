"""EnCodec training (audiocraft CompressionSolver recipe): losses, MS-STFT discriminator, loss
balancer, the jitted generator + discriminator step, the audio-crop input pipeline and the loop."""
