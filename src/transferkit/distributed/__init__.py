"""Past one machine: data-parallel training under torchrun and feature extraction in shards or on Ray.

* :mod:`.ddp`: the torchrun environment, the process group, gradient all-reduce and global-batch BatchNorm
  (what the engine's :class:`~transferkit.engine.accelerator.Accelerator` uses; torch only);
* :mod:`.launch`: ``transferkit fit --nproc-per-node N`` re-runs the same fit under ``torch.distributed.run``;
* :mod:`.shards`: the shard files of a feature extraction (Parquet, one per row range), resume and merge;
* :mod:`.embedder`: a picklable job description and an ``Embedder`` (loads the backbone once) for row ranges;
* :mod:`.extract`: one shard in this process (``--shard I/N``, any launcher runs the N copies);
* :mod:`.ray_extract`: the shards computed by a pool of Ray Data actors (``ray`` is an optional extra).

Nothing here is imported by ``import transferkit``; Ray is imported only when ``--cluster ray`` is asked for.
"""
