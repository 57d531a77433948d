using System.Text.Json;
using Dapper;
using Npgsql;

namespace Crm.BuildingBlocks.Outbox;

/// <summary>Writes integration events into the outbox table, inside the caller's transaction.</summary>
public static class Outbox
{
    /// <summary>The payload format; the relay reads it back with the same options.</summary>
    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    /// <summary>"Full.Type.Name, Assembly": stable across versions, resolvable by the relay.</summary>
    public static string TypeName<T>() => TypeName(typeof(T));

    public static string TypeName(Type type) => $"{type.FullName}, {type.Assembly.GetName().Name}";

    public static Task EnqueueAsync<T>(NpgsqlConnection connection, NpgsqlTransaction transaction, T message)
        where T : class =>
        connection.ExecuteAsync(
            "INSERT INTO outbox_messages (message_type, payload) VALUES (@type, @payload)",
            new { type = TypeName<T>(), payload = JsonSerializer.Serialize(message, Json) },
            transaction);

    public static Task EnqueueManyAsync<T>(NpgsqlConnection connection, NpgsqlTransaction transaction, IEnumerable<T> messages)
        where T : class =>
        EnqueueSerializedAsync<T>(connection, transaction, messages.Select(m => JsonSerializer.Serialize(m, Json)).ToArray());

    /// <summary>
    /// Enqueues messages of type <typeparamref name="T"/> already written as JSON in the form <see cref="Json"/>
    /// gives (a bulk writer that produces its payloads directly).
    /// </summary>
    public static async Task EnqueueSerializedAsync<T>(NpgsqlConnection connection, NpgsqlTransaction transaction, string[] payloads)
        where T : class
    {
        if (payloads.Length == 0) return;
        await connection.ExecuteAsync(
            "INSERT INTO outbox_messages (message_type, payload) SELECT @type, p FROM unnest(@payloads) AS p",
            new { type = TypeName<T>(), payloads }, transaction);
    }
}

/// <summary>Idempotent consumers: record the message id in the same transaction as the effect.</summary>
public static class Inbox
{
    /// <returns>false when this consumer already handled the message.</returns>
    public static async Task<bool> TryBeginAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string consumer, Guid messageId) =>
        await connection.ExecuteAsync(
            "INSERT INTO inbox_messages (consumer, message_id) VALUES (@consumer, @messageId) ON CONFLICT DO NOTHING",
            new { consumer, messageId }, transaction) == 1;
}
