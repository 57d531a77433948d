using Google.Rpc;
using Grpc.Core;

namespace Crm.Contacts.Tests.Infrastructure;

public static class Rpc
{
    /// <summary>Asserts the call fails with the code, and returns the google.rpc.Status details.</summary>
    public static async Task<Google.Rpc.Status?> FailsWith(StatusCode code, Func<Task> call)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal(code, ex.StatusCode);
        return ex.GetRpcStatus();
    }

    public static IReadOnlyList<string> ViolatedFields(Google.Rpc.Status? status) =>
        status?.GetDetail<BadRequest>()?.FieldViolations.Select(v => v.Field).ToList() ?? [];
}
