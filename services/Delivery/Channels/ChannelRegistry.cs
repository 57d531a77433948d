using System.Collections.Frozen;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Crm.Delivery.Channels;

/// <summary>The registered channels, by name, by proto value and by provider kind. The pipeline dispatches through it.</summary>
public sealed class ChannelRegistry
{
    private readonly FrozenDictionary<string, IChannel> _byName;
    private readonly FrozenDictionary<V1.Channel, IChannel> _byProto;

    public ChannelRegistry(IEnumerable<IChannel> channels)
    {
        var all = channels.ToList();
        _byName = all.ToFrozenDictionary(c => c.Name, StringComparer.Ordinal);
        _byProto = all.ToFrozenDictionary(c => c.Proto);
        All = all;
    }

    public IReadOnlyList<IChannel> All { get; }

    /// <summary>The names of the channels, for error messages ("must be one of ...").</summary>
    public string Names => string.Join(", ", All.Select(c => c.Name));

    public IChannel? Find(string? name) => name is not null && _byName.TryGetValue(name, out var c) ? c : null;

    /// <exception cref="InvalidOperationException">A stored name no registered channel answers to.</exception>
    public IChannel Get(string name) => Find(name) ?? throw new InvalidOperationException($"No channel '{name}' is registered.");

    public IChannel? Find(V1.Channel proto) => _byProto.GetValueOrDefault(proto);

    /// <summary>The name of a proto channel value, "" when none is registered for it.</summary>
    public string NameOf(V1.Channel proto) => Find(proto)?.Name ?? "";

    /// <summary>The proto value of a stored channel name.</summary>
    public V1.Channel ProtoOf(string name) => Find(name)?.Proto ?? V1.Channel.Unspecified;

    /// <summary>A provider kind by its stored name, with its channel; the noop kind belongs to no channel.</summary>
    public (IChannel Channel, ChannelProvider Provider)? Provider(string kind) =>
        All.SelectMany(c => c.Providers.Select(p => (c, p))).FirstOrDefault(x => x.p.Kind == kind) is { c: not null } hit ? hit : null;

    public (IChannel Channel, ChannelProvider Provider)? Provider(V1.ProviderKind proto) =>
        All.SelectMany(c => c.Providers.Select(p => (c, p))).FirstOrDefault(x => x.p.Proto == proto) is { c: not null } hit ? hit : null;

    /// <summary>Does the provider report delivery by its message id (so the id is indexed for its receipts)?</summary>
    public bool SendsReceipts(string kind) => Provider(kind)?.Provider.SendsReceipts ?? false;
}

public static class ChannelRegistration
{
    /// <summary>Registers a channel (one line per channel in DeliveryModule) and the registry, once.</summary>
    public static IServiceCollection AddChannel<T>(this IServiceCollection services) where T : class, IChannel
    {
        services.AddSingleton<T>();
        services.AddSingleton<IChannel>(sp => sp.GetRequiredService<T>());
        services.TryAddSingleton<ChannelRegistry>();
        services.TryAddSingleton<NoopSender>();
        return services;
    }

    /// <summary>Every registered channel's provider callbacks.</summary>
    public static WebApplication MapChannelEndpoints(this WebApplication app)
    {
        foreach (var channel in app.Services.GetRequiredService<ChannelRegistry>().All) channel.MapEndpoints(app);
        return app;
    }
}
