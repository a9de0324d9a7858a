"""magnet-jax: MAGNeT (Ziv et al., ICLR 2024), MusicGen and Hybrid-MAGNeT in JAX / Flax NNX.

Packages, lowest layer first (a module imports only from layers below it: ``python -m tests.import_graph``):
  util, hub, audio_files, sharding   helpers: user input, hub / cache look-ups, WAV + PNG writing, meshes
  model           the LMs: MAGNeT's span-masked transformer, MusicGen's delay pattern and chroma; the family table
  text            T5 encoder + tokenizer with the reference conditioner semantics
  codec           EnCodec (SEANet + RVQ) and the frame codec: encode / decode, the trainable codec
  objectives      training objectives per family: MAGNeT's span masking, MusicGen's next token, the hybrid's mix
  decoding        generation as jitted programs: MAGNeT's iterative span decoding, MusicGen's sampling, rescoring
  convert         audiocraft / Hugging Face / encodec checkpoints -> NNX models (torch-free), and back
  data            offline EnCodec tokenization to TFDS, Grain input pipeline
  presets         architecture tables (the released sizes, the small random-init ones)
  training        sharded train step, checkpoints, multi-host
  codec_training  training a codec (adversarial losses, balancer, export)
  bundled         the offline model this project trains: corpus, text encoder, packaged weights
  configs         experiment configs: a preset + its training settings
  pipelines       text -> audio: MagnetPipeline, MusicGenPipeline, Hybrid-MAGNeT, a MusicGen companion
  eval            metrics (FAD, CLAP adherence, reconstruction, LM loss) and the evaluation report
  jobs            the front ends: the generate batch job (tools/generate.py) and the web page (tools/app.py)
"""
__version__ = "0.1.0"
