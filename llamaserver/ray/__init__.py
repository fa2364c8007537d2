"""``llamaserver`` on Ray Serve: N replicas, each a whole ``LlamaServer``, behind one ingress
that speaks the same HTTP API (llama.cpp's and OpenAI's, streaming, the same API keys), with
prefix-aware routing and autoscaling on queue length.  Needs ``pip install -e '.[ray]'``.

::

    llamaserver --ray-replicas 2 -np 4                  # a local Ray cluster, port 8080
    llamaserver --ray-address auto --ray-min-replicas 1 --ray-max-replicas 8

    from llamaserver.ray import build_app                # or in your own Serve program
    serve.run(build_app(ServerSettings(ray_replicas=2)))

Routing builds on Ray Serve's custom request router API (``ray.serve.request_router``):
``PrefixAffinityRouter`` is the replicas' ``RequestRouterConfig.request_router_class``.
"""

from ._app import APP_NAME, app_builder, build_app, replica_settings, run
from ._prefix_index import Match, PrefixIndex
from ._routing_key import RoutingKey, routing_key

__all__ = ["APP_NAME", "Match", "PrefixIndex", "RoutingKey", "app_builder", "build_app",
           "replica_settings", "routing_key", "run"]
