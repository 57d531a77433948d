namespace Crm.Faults.Tests.Infrastructure;

/// <summary>A hard limit on a whole test: past it the test fails (and its servers are stopped) instead of hanging CI.</summary>
public static class Deadline
{
    public static async Task WithinAsync(TimeSpan limit, Func<CancellationToken, Task> test)
    {
        using var cts = new CancellationTokenSource(limit);
        try
        {
            // WaitAsync also covers a step that ignores the token.
            await test(cts.Token).WaitAsync(limit + TimeSpan.FromSeconds(30));
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            throw new TimeoutException($"The test did not finish within {limit}");
        }
    }
}
